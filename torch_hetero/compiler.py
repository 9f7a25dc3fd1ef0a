"""One ATen graph → a callable: lower, schedule, render C++ and the wrapper, build, load."""
from __future__ import annotations

import collections
import ctypes
import dataclasses
import hashlib
import importlib.resources
import linecache

import torch

from . import scheduler, symbolic
from .codegen.cpp import render_kernel
from .codegen.wrapper import render_wrapper
from .device_models.estimates import estimate_graph, matmul_tiling, plan_kernels
from .graph import GraphLowering
from .runtime import cpp_build

_PRELUDE = importlib.resources.files("torch_hetero.codegen").joinpath("cpp_prelude.h").read_text()


@dataclasses.dataclass
class CompiledGraph:
    """A compiled graph plus what ``explain()`` reports about it."""
    call: object
    kernels: list
    externs: list                  # ExternCall records (matmul/conv and fallbacks)
    estimates: dict                # id(Kernel or ExternCall) → Estimate on the target profile
    tilings: dict                  # id(Kernel or matmul ExternCall) → its tiling on the target profile
    steps: list                    # scheduler.Step, in execution order
    fallbacks: collections.Counter
    code: dict                     # "<graph>.cpp" / "<graph>.py" → source

    def __post_init__(self):
        # AOTAutograd passes the argument list itself; an instance attribute survives the
        # functools.wraps that Dynamo puts around backward graphs
        self._boxed_call = True

    def __call__(self, args):
        return self.call(args)


def compile_graph(gm: torch.fx.GraphModule, profile, name: str = "graph", estimate: bool = True,
                  fusion: bool = True) -> CompiledGraph:
    """``profile``: the target DeviceProfile; its device model plans the kernels (fusing them
    unless ``fusion`` is False) and, with ``estimate``, estimates every step."""
    graph = GraphLowering(gm).run()
    kernels = scheduler.kernels_of(graph, profile, fusion)
    plan_kernels(graph, kernels, profile)
    for kernel in kernels:
        rendered = render_kernel(kernel.name, kernel.group)
        matmul = [kernel.group.matmul.name.split(".default")[0]] if kernel.group.matmul is not None else []
        kernel.source, kernel.origins = rendered.source, matmul + rendered.origins
        kernel.buffer_args, kernel.symbol_args = rendered.buffer_args, rendered.symbol_args
    steps = scheduler.plan_memory(graph, kernels)
    cpp_source = _PRELUDE + "\n" + "\n".join(k.source for k in kernels)
    wrapper_source = render_wrapper(graph, steps)
    call = _load(cpp_source if kernels else None, wrapper_source, kernels, graph.constants)
    externs = [s.work for s in steps if not isinstance(s.work, scheduler.Kernel)]
    tilings = {id(k): k.tiling for k in kernels}
    matmuls = externs + [k.group.matmul for k in kernels if k.group.matmul is not None]
    tilings.update((id(call), matmul_tiling(call, graph.size_hints, profile)) for call in matmuls)
    estimates = {}
    if estimate:
        estimates = {id(s.work): e for s, e in zip(steps, estimate_graph(graph, steps, profile))}
    code = {f"{name}.py": wrapper_source}
    if kernels:
        code[f"{name}.cpp"] = cpp_source
    return CompiledGraph(call, kernels, externs, estimates, tilings, steps, graph.fallback_counts, code)


def _load(cpp_source, wrapper_source: str, kernels: list, constants: dict):
    namespace = {"torch": torch, "empty_strided": torch.empty_strided, "reinterpret": _reinterpret,
                 **constants}
    if cpp_source is not None:
        lib = cpp_build.load_library(cpp_source)
        for kernel in kernels:
            fn = getattr(lib, kernel.name)
            fn.argtypes = [ctypes.c_void_p] * len(kernel.buffer_args) + [
                ctypes.c_double if symbolic.is_float_symbol(s) else ctypes.c_int64 for s in kernel.symbol_args]
            fn.restype = None
            namespace[kernel.name] = fn
        namespace["sync_threads"] = _thread_syncer(lib)
    else:
        namespace["sync_threads"] = lambda: None
    filename = f"<torch_hetero wrapper {hashlib.sha256(wrapper_source.encode()).hexdigest()[:12]}>"
    linecache.cache[filename] = (len(wrapper_source), None, wrapper_source.splitlines(True), filename)
    exec(compile(wrapper_source, filename, "exec"), namespace)
    return namespace["call"]


def _reinterpret(tensor, size, stride, offset):
    return tensor.as_strided(size, stride, tensor.storage_offset() + offset)


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

