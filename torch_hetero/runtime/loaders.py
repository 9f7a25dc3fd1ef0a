"""Per kernel language, how a compiled graph's kernels become callables in its wrapper's
namespace: the loading half of ``codegen.renderers``' registry (codegen loads nothing)."""
from __future__ import annotations

import ctypes

import torch

from ..codegen.renderers import RENDERERS
from . import cpp_build, triton_run


def load(language: str, kernels: list, interpret: bool) -> dict:
    """``kernels`` — (name, source, buffer count, per size symbol: is it a float) — written in
    ``language``, loaded: the wrapper's namespace entries (each kernel by name, and helpers)."""
    return LOADERS[language](RENDERERS[language], kernels, interpret)


def load_host(renderer, kernels: list, interpret: bool) -> dict:
    """The C++ library (from the build cache, built if missing): each kernel as a ctypes
    function, and the wrapper's ``sync_threads`` and ``check_zero_division``."""
    lib = cpp_build.load_library(renderer.prelude, [source for _, source, _, _ in kernels])
    namespace = {}
    for name, _, buffers, float_symbols in kernels:
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p] * buffers + [ctypes.c_double if f else ctypes.c_int64 for f in float_symbols]
        fn.restype = None
        namespace[name] = fn
    namespace["sync_threads"] = _thread_syncer(lib)
    namespace["check_zero_division"] = _zero_division_checker(lib)
    return namespace


def load_triton(renderer, kernels: list, interpret: bool) -> dict:
    """The Triton module, natively or (``interpret``) under Triton's interpreter."""
    module = triton_run.load_module(renderer.module([source for _, source, _, _ in kernels]), interpret)
    return {name: getattr(module, name) for name, _, _, _ in kernels}


LOADERS = {"cpp": load_host, "triton": load_triton}


def _zero_division_checker(lib):
    """Raises eager CPU's error if a kernel divided an integer by zero (the prelude's division
    helpers record it instead of trapping)."""
    take = lib.hetero_take_zero_division
    take.argtypes, take.restype = [], ctypes.c_int

    def check():
        if take():
            raise RuntimeError("ZeroDivisionError")
    return check


def _thread_syncer(lib):
    """Keep the library's OpenMP thread count equal to torch's (checked once per call)."""
    state = [None]
    set_threads = lib.hetero_set_num_threads

    def sync():
        n = torch.get_num_threads()
        if n != state[0]:
            set_threads(n)
            state[0] = n
    return sync
