"""Builds one C++ source into a shared library with the system compiler, through the cache."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile

import torch

from ..errors import HeteroCompileError
from . import cache

# -fno-tree-loop-if-convert: g++ 12.2 -O3 with AVX-512 miscompiles loops holding two masked
# regions (cat of broadcast values, found by benchmarks/fuzz.py, seed 420); without
# if-conversion those loops stay scalar, every other loop still vectorizes.
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17",
         "-fno-math-errno", "-fno-trapping-math", "-fno-tree-loop-if-convert", "-w")
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


def _flags(source: str) -> tuple:
    """FLAGS, plus torch's include directory when the source uses ATen's headers
    (header-only math; nothing of libtorch is linked)."""
    if "#include <ATen/" not in source:
        return FLAGS
    return FLAGS + ("-I" + os.path.join(os.path.dirname(torch.__file__), "include"),)


def build_key(source: str) -> str:
    compiler = find_compiler()
    flags = _flags(source)
    version = torch.__version__ if flags != FLAGS else ""  # the headers are torch's
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
        result = subprocess.run([compiler, *_flags(source), src, "-o", out], capture_output=True, text=True)
        if result.returncode != 0:
            raise HeteroCompileError(f"{os.path.basename(compiler)} failed to build generated code:\n"
                                     f"{result.stderr[-4000:]}")
        with open(out, "rb") as f:
            return f.read()
