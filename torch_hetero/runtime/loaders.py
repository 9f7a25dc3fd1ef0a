"""Per kernel language, how a compiled graph's kernels become callables in its wrapper's
namespace: the loading half of ``codegen.renderers``' registry (codegen loads nothing)."""
from __future__ import annotations

import ctypes
import re

import torch

from ..codegen.renderers import RENDERERS
from . import cpp_build, triton_run


def load(language: str, kernels: list, interpret: bool) -> dict:
    """``kernels`` — (name, source, buffer count, per size symbol: is it a float) — written in
    ``language``, loaded: the wrapper's namespace entries (each kernel by name, and helpers)."""
    return LOADERS[language](RENDERERS[language], kernels, interpret)


def load_host(renderer, kernels: list, interpret: bool) -> dict:
    """The C++ library (from the build cache, built if missing): each kernel as a ctypes
    function, and the wrapper's ``sync_threads`` and ``check_zero_division``.  Kernels that
    differ only in their names and their buffers' are built once (a CNN's batch norms, a
    transformer's repeated layers: 108 kernels of MobileNetV2, 41 distinct), and share it."""
    same_as = {}   # kernel → the first kernel whose code it repeats
    first = {}
    for name, source, _, _ in kernels:
        same_as[name] = first.setdefault(_canonical(name, source), name)
    lib = cpp_build.load_library(renderer.prelude, [source for name, source, _, _ in kernels if same_as[name] == name])
    namespace = {}
    for name, _, buffers, float_symbols in kernels:
        if same_as[name] != name:
            namespace[name] = namespace[same_as[name]]
            continue
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p] * buffers + [ctypes.c_double if f else ctypes.c_int64 for f in float_symbols]
        fn.restype = None
        namespace[name] = fn
    namespace["sync_threads"] = _thread_syncer(lib)
    namespace["check_zero_division"] = _zero_division_checker(lib)
    return namespace


def _canonical(name: str, source: str) -> str:
    """A kernel's code up to names: comments dropped, its own name and each buffer's
    (``bufN``/``argN``, also inside a local's name) numbered by first appearance.  Equal
    texts are the same function of their positional arguments."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("//"))
    code = re.sub(rf"\b{name}\b", "kernel", code)
    numbers: dict = {}
    return _BUFFER_NAME.sub(lambda m: numbers.setdefault(m.group(0), f"b{len(numbers)}"), code)


_BUFFER_NAME = re.compile(r"(?<![A-Za-z0-9_])(?:buf|arg)[0-9]+(?![0-9])")


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
