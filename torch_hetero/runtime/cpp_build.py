"""Builds one C++ source into a shared library with the system compiler, through the cache."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile

import torch

from ..device_models import host
from ..errors import HeteroCompileError
from ..codegen.cpp import library_source
from . import cache

# If-conversion stays on, so loops with selects (relu, where, masks) vectorize.  An AVX-512
# miscompile of masked cat loops under g++ 12.2 (benchmarks/fuzz.py seed 420) once made us turn
# it off; it no longer reproduces since loops carry `#pragma omp simd` (tests/test_fuzz.py
# keeps the case; benchmarks/fuzz.py: 507 graphs, 0 failures with it on).
# -fno-tree-sink: g++ would sink a libm call used by only one side of a select into a branch,
# where its SIMD variant (libmvec has no masked ones) cannot go: `where(x > 0, exp(x), ...)`
# loops would stay scalar.
# -ffp-contract=off: every op rounds, as in eager (a contracted x * 100 - max differs from
# eager's by the product's rounding error; found by test_correctness softmax_large_values).
# C++14: its <cmath> parses in a third of C++17's time (the special math functions); sources
# that include ATen's headers need C++17 (see _flags).
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++14", "-fno-math-errno",
         "-fno-trapping-math", "-ffp-contract=off", "-w")
GCC_FLAGS = ("-fno-tree-sink",)   # g++'s own: other compilers may reject them
COMPILERS = ("g++", "clang++", "c++")


@functools.lru_cache(maxsize=None)
def find_compiler() -> str:
    """$CXX if set, else the first of g++, clang++, c++ on PATH."""
    wanted = os.environ.get("CXX")
    candidates = [wanted] if wanted else list(COMPILERS)
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    looked = f"$CXX={wanted!r}" if wanted else ", ".join(COMPILERS)
    raise HeteroCompileError(
        f"no C++ compiler found (looked for {looked} on PATH). Install one "
        f"(e.g. `apt-get install g++`) or point $CXX at it.")


@functools.lru_cache(maxsize=None)
def compiler_version(compiler: str) -> str:
    out = subprocess.run([compiler, "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0] if out.stdout else compiler


# libmvec functions the prelude declares SIMD (glibc >= 2.35 has all of them on x86-64)
_LIBMVEC_PROBE = "_ZGVdN8v_erff"


@functools.lru_cache(maxsize=None)
def _libmvec_flags() -> tuple:
    """Link glibc's vector math library when it has the float functions the prelude declares
    SIMD; otherwise loops calling them stay scalar."""
    path = ctypes.util.find_library("mvec")
    try:
        available = path is not None and hasattr(ctypes.CDLL(path), _LIBMVEC_PROBE)
    except OSError:
        available = False
    return ("-DHETERO_LIBMVEC", "-lmvec") if available else ()  # the library goes last (see _compile)


@functools.lru_cache(maxsize=None)
def _vector_width_flags() -> tuple:
    """Vectors as wide as the host profile counts (``simd_width``): on AVX-512 cores g++ and
    clang tune -march=native to 256-bit loops, half the lanes ATen's and Inductor's vector code
    use.  512-bit loops took less kernel time on each model of the suite (GELU 1.5x; a model's
    kernels 6-42 % less, interleaved per-kernel timing)."""
    return ("-mprefer-vector-width=512",) if host.simd_lanes() == 16 else ()


def compile_flags(source: str) -> tuple:
    """FLAGS and libmvec's, plus torch's include directory and C++17 when the source uses
    ATen's headers (header-only math; nothing of libtorch is linked)."""
    compiler = find_compiler()
    flags = (FLAGS + (GCC_FLAGS if "clang" not in compiler_version(compiler) else ()) + _vector_width_flags()
             + _libmvec_flags())
    if "#include <ATen/" not in source:
        return flags
    return tuple("-std=c++17" if f == "-std=c++14" else f for f in flags) + (
        "-I" + os.path.join(os.path.dirname(torch.__file__), "include"),)


def build_key(source: str) -> str:
    compiler = find_compiler()
    flags = compile_flags(source)
    version = torch.__version__ if "#include <ATen/" in source else ""  # the headers are torch's
    text = "\0".join([source, compiler, compiler_version(compiler), " ".join(flags), version])
    return hashlib.sha256(text.encode()).hexdigest()


def load_library(prelude: str, kernels: list) -> ctypes.CDLL:
    """The library of ``kernels`` (self-contained C++ functions, each with its includes) after
    ``prelude``: from the cache when a verified entry exists, else built."""
    path = cache.load_or_build(build_key(library_source(prelude, kernels)), lambda: _compile(prelude, kernels))
    return ctypes.CDLL(path)




MIN_KERNELS_PER_UNIT = 4   # fewer, and a unit's share of parsing the prelude outweighs the split


def units(prelude: str, kernels: list) -> list:
    """Translation units to compile in parallel, one per core at most: the kernels dealt into
    chunks of about equal length, each after the prelude; only the first defines the
    library's entry points (HETERO_SECONDARY_UNIT elsewhere)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    count = max(1, min(cores, len(kernels) // MIN_KERNELS_PER_UNIT))
    chunks: list = [[] for _ in range(count)]
    sizes = [0] * count
    for kernel in sorted(kernels, key=len, reverse=True):
        smallest = sizes.index(min(sizes))
        chunks[smallest].append(kernel)
        sizes[smallest] += len(kernel)
    return [("" if i == 0 else "#define HETERO_SECONDARY_UNIT\n") + library_source(prelude, chunk)
            for i, chunk in enumerate(chunks)]


def _compile(prelude: str, kernels: list) -> bytes:
    """Each unit compiled to an object file by its own compiler process, at once; then linked."""
    compiler = find_compiler()
    with tempfile.TemporaryDirectory(prefix="torch_hetero_build_") as tmp:
        processes, objects = [], []
        for i, unit in enumerate(units(prelude, kernels)):
            src, obj = os.path.join(tmp, f"kernels{i}.cpp"), os.path.join(tmp, f"kernels{i}.o")
            with open(src, "w") as f:
                f.write(unit)
            command = [compiler, *[f for f in compile_flags(unit) if not f.startswith("-l")], "-c", src, "-o", obj]
            processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            objects.append(obj)
        for process in processes:
            _, stderr = process.communicate()
            if process.returncode != 0:
                raise HeteroCompileError(f"{os.path.basename(compiler)} failed to build generated code:\n"
                                         f"{stderr[-4000:]}")
        out = os.path.join(tmp, "kernels.so")
        flags = compile_flags(library_source(prelude, kernels))
        libraries = [f for f in flags if f.startswith("-l")]  # after the objects, or the linker drops them
        result = subprocess.run([compiler, *[f for f in flags if f not in libraries], *objects, "-o", out, *libraries],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise HeteroCompileError(f"{os.path.basename(compiler)} failed to link generated code:\n"
                                     f"{result.stderr[-4000:]}")
        with open(out, "rb") as f:
            return f.read()
