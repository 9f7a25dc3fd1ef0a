"""One ATen graph → a callable: lower, schedule, render C++ and the wrapper, build, load."""
from __future__ import annotations

import collections
import ctypes
import dataclasses
import hashlib
import importlib.resources
import linecache
import time

import torch

from . import symbolic
from .codegen.cpp import render_kernel
from .codegen.triton import PRELUDE as TRITON_PRELUDE
from .codegen.triton import needs_int64, render_kernel as render_triton
from .codegen.wrapper import render_wrapper
from .errors import HeteroCompileError, one_line
from .graph import GraphLowering, module_path, op_name, warn_fallback
from .planning import scheduler
from .planning.estimates import estimate_graph, matmul_tiling, peak_memory, plan_kernels
from .runtime import cpp_build, triton_run

_PRELUDE = importlib.resources.files("torch_hetero.codegen").joinpath("cpp_prelude.h").read_text()


@dataclasses.dataclass
class Loadable:
    """What runs a compiled graph, as plain data: the wrapper's source, each C++ kernel's name,
    source and signature, the Triton module's source.  ``load()`` makes the call (the C++
    library comes from the build cache, built again if missing); AOTAutograd's cache pickles
    it (``aot_cache``)."""
    wrapper_source: str
    host_kernels: list        # (name, source, buffer count, per size symbol: is it a float)
    triton_source: str | None
    interpret: bool           # the Triton module under the interpreter
    triton_names: list
    constants: dict           # the graph's constant tensors, by name
    profile: str              # the target profile's name
    fallbacks: dict           # op → its FallbackWarning's text, warned again by a process that loads this

    def warn_fallbacks(self) -> None:
        """The fallback warnings of a graph loaded from the cache: its lowering did not run here."""
        for op, what in self.fallbacks.items():
            warn_fallback(op, self.profile, what)

    def load(self):
        namespace = {"torch": torch, "empty_strided": torch.empty_strided, "reinterpret": _reinterpret,
                     "cdiv": lambda a, b: -(-a // b), **self.constants}
        namespace["sync_threads"] = lambda: None
        if self.host_kernels:
            lib = cpp_build.load_library(_PRELUDE, [source for _, source, _, _ in self.host_kernels])
            for name, _, buffers, float_symbols in self.host_kernels:
                fn = getattr(lib, name)
                fn.argtypes = [ctypes.c_void_p] * buffers + [
                    ctypes.c_double if is_float else ctypes.c_int64 for is_float in float_symbols]
                fn.restype = None
                namespace[name] = fn
            namespace["sync_threads"] = _thread_syncer(lib)
            namespace["check_zero_division"] = _zero_division_checker(lib)
        if self.triton_source is not None:
            module = triton_run.load_module(self.triton_source, self.interpret)
            namespace.update({name: getattr(module, name) for name in self.triton_names})
        source = self.wrapper_source
        filename = f"<torch_hetero wrapper {hashlib.sha256(source.encode()).hexdigest()[:12]}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), namespace)
        return namespace["call"]


@dataclasses.dataclass
class CompiledGraph:
    """A compiled graph plus what ``explain()`` reports about it."""
    call: object
    loadable: Loadable
    kernels: list
    externs: list                  # ExternCall records (matmul/conv and fallbacks)
    estimates: dict                # id(Kernel or ExternCall) → Estimate on the target profile
    tilings: dict                  # id(Kernel or matmul ExternCall) → its tiling on the target profile
    steps: list                    # scheduler.Step, in execution order
    fallbacks: collections.Counter
    code: dict                     # "<graph>.cpp" / "<graph>.py" → source
    compile_s: float               # seconds spent here: lowering to loading (a cache hit skips the build)
    peak_bytes: int | None = None  # activations live at once at the plan's peak (with estimates only)

    def __post_init__(self):
        # AOTAutograd passes the argument list itself; an instance attribute survives the
        # functools.wraps that Dynamo puts around backward graphs
        self._boxed_call = True

    def __call__(self, args):
        return self.call(args)


@dataclasses.dataclass
class EagerGraph:
    """A graph that could not be compiled and ran eagerly: why, and the ATen ops it held, so
    that reports and the audit show it instead of an empty success."""
    cause: str                     # one line: the error's type and its real cause (errors.one_line)
    ops: collections.Counter       # ATen op → calls in the graph
    layers: dict                   # ATen op → the modules its calls came from, in order
    compile_s: float               # seconds spent before the compile failed

    @classmethod
    def of(cls, gm: torch.fx.GraphModule, error: BaseException, compile_s: float) -> "EagerGraph":
        ops, layers = collections.Counter(), {}
        for node in gm.graph.nodes:
            if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
                op = op_name(node.target)
                ops[op] += 1
                if module_path(node) not in layers.setdefault(op, []):
                    layers[op].append(module_path(node))
        return cls(one_line(error), ops, layers, compile_s)


def compile_graph(gm: torch.fx.GraphModule, profile, name: str = "graph", estimate: bool = True,
                  fusion: bool = True, executor: str = "auto", strict: bool = False) -> CompiledGraph:
    """``profile``: the target DeviceProfile; its device model plans the kernels (fusing them
    unless ``fusion`` is False) and, with ``estimate``, estimates every step.  ``executor``
    (see ``options.EXECUTORS``) decides what runs here; the target's code is rendered either way.
    ``strict``: an op with no native lowering raises instead of running through ATen."""
    start = time.perf_counter()
    graph = GraphLowering(gm, profile.target, profile.name, strict).run()
    kernels = scheduler.kernels_of(graph, profile, fusion)
    plan_kernels(graph, kernels, profile)
    runs = choose_executor(executor, profile, graph)
    matmul_tiles = {id(k.group.matmul): matmul_tiling(k.group.matmul, graph.size_hints, profile)
                    for k in kernels if k.group.matmul is not None}
    storage = graph.storage()
    for kernel in kernels:
        if profile.codegen == "triton":  # the target's code, whatever runs here
            kernel.triton = render_triton(kernel.name, kernel.group, kernel.tiling,
                                          matmul_tiles.get(id(kernel.group.matmul)),
                                          needs_int64(kernel.group, storage))
        if runs == "host":
            rendered = render_kernel(kernel.name, kernel.group, kernel.cost.loops)
            kernel.may_divide_by_zero = rendered.may_divide_by_zero
        else:
            rendered, kernel.target = kernel.triton, "triton"
        matmul = [kernel.group.matmul.name.split(".default")[0]] if kernel.group.matmul is not None else []
        kernel.source, kernel.origins = rendered.source, matmul + rendered.origins
        kernel.buffer_args, kernel.symbol_args = rendered.buffer_args, rendered.symbol_args
    code: dict = {}
    if kernels and profile.codegen == "triton":
        code[f"{name}.triton.py"] = TRITON_PRELUDE + "\n\n" + "\n\n".join(k.triton.source for k in kernels)
    steps = scheduler.plan_memory(graph, kernels)
    wrapper_source = render_wrapper(graph, steps, device=_device(graph) if runs == "native" else None)
    code[f"{name}.py"] = wrapper_source
    host_kernels = [k for k in kernels if k.target == "cpp"]
    cpp_source = cpp_build.joined(_PRELUDE, [k.source for k in host_kernels]) if host_kernels else None
    if cpp_source:
        code[f"{name}.cpp"] = cpp_source
    triton_source = code.get(f"{name}.triton.py") if runs != "host" else None
    signatures = [(k.name, k.source, len(k.buffer_args), [symbolic.is_float_symbol(s) for s in k.symbol_args])
                  for k in host_kernels]
    loadable = Loadable(wrapper_source, signatures, triton_source, runs == "interpret",
                        [k.name for k in kernels if k.target == "triton"], graph.constants, profile.name,
                        graph.fallback_notes)
    call = loadable.load()
    externs = [s.work for s in steps if not isinstance(s.work, scheduler.Kernel)]
    tilings = {id(k): k.tiling for k in kernels}
    tilings.update(matmul_tiles)
    tilings.update((id(call), matmul_tiling(call, graph.size_hints, profile)) for call in externs)
    estimates, peak = {}, None
    if estimate:
        estimates = {id(s.work): e for s, e in zip(steps, estimate_graph(graph, steps, profile))}
        peak = peak_memory(graph, steps)
    return CompiledGraph(call, loadable, kernels, externs, estimates, tilings, steps, graph.fallback_counts, code,
                         time.perf_counter() - start, peak)


def choose_executor(option: str, profile, graph: GraphLowering) -> str:
    """"host" (generated C++), "interpret" (Triton's CPU interpreter) or "native" (Triton on a
    GPU) for this graph: Triton runs only for Triton-target profiles."""
    device = _device(graph)
    if profile.codegen != "triton" or option == "host" or (option == "auto" and device.type == "cpu"):
        if device.type != "cpu":
            raise HeteroCompileError(
                f"inputs are on {device} but the {profile.name!r} profile runs generated C++ on the host: "
                "pick a GPU profile (e.g. options={'device': 'h100'}) or move the model to the CPU")
        return "host"
    if option == "interpret":
        if device.type != "cpu":
            raise HeteroCompileError("TORCH_HETERO_EXEC=interpret runs on the CPU: move the inputs there")
        return "interpret"
    if not torch.cuda.is_available() or device.type != "cuda":
        raise HeteroCompileError(f"TORCH_HETERO_EXEC={option} needs the inputs on a visible GPU (they are on "
                                 f"{device}); use 'interpret' or 'host' to run here")
    return "native"


def _device(graph: GraphLowering) -> torch.device:
    """Where the graph's tensors live: its accelerator if any input is on one, else the CPU."""
    devices = sorted({meta.device for kind, _, meta in graph.placeholders if kind == "tensor"}, key=str)
    return next((d for d in devices if d.type != "cpu"), torch.device("cpu"))


def _reinterpret(tensor, size, stride, offset):
    return tensor.as_strided(size, stride, tensor.storage_offset() + offset)


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

