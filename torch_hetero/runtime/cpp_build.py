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

from ..errors import HeteroCompileError
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
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17", "-fno-math-errno",
         "-fno-trapping-math", "-fno-tree-sink", "-ffp-contract=off", "-w")
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


def vector_libm() -> bool:
    """Do host kernels call vector libm (libmvec) in vectorized loops?  The cost model asks."""
    return bool(_libmvec_flags())


def _flags(source: str) -> tuple:
    """FLAGS and libmvec's, plus torch's include directory when the source uses ATen's
    headers (header-only math; nothing of libtorch is linked)."""
    flags = FLAGS + _libmvec_flags()
    if "#include <ATen/" not in source:
        return flags
    return flags + ("-I" + os.path.join(os.path.dirname(torch.__file__), "include"),)


def build_key(source: str) -> str:
    compiler = find_compiler()
    flags = _flags(source)
    version = torch.__version__ if "#include <ATen/" in source else ""  # the headers are torch's
    text = "\0".join([source, compiler, compiler_version(compiler), " ".join(flags), version])
    return hashlib.sha256(text.encode()).hexdigest()


def load_library(source: str) -> ctypes.CDLL:
    """The library for ``source``: from the cache when a verified entry exists, else built."""
    key = build_key(source)
    path = cache.lookup(key)
    if path is None:
        path = cache.store(key, _compile(source))
    return ctypes.CDLL(path)


def _compile(source: str) -> bytes:
    compiler = find_compiler()
    with tempfile.TemporaryDirectory(prefix="torch_hetero_build_") as tmp:
        src, out = os.path.join(tmp, "kernels.cpp"), os.path.join(tmp, "kernels.so")
        with open(src, "w") as f:
            f.write(source)
        flags = _flags(source)
        libraries = [f for f in flags if f.startswith("-l")]  # after the source, or the linker drops them
        command = [compiler, *[f for f in flags if f not in libraries], src, "-o", out, *libraries]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise HeteroCompileError(f"{os.path.basename(compiler)} failed to build generated code:\n"
                                     f"{result.stderr[-4000:]}")
        with open(out, "rb") as f:
            return f.read()
