"""One ATen graph → a callable, by passes: lower (``graph``) → plan (``planning.passes``: fuse,
tile, estimate, plan memory) → render (``codegen.renderers``, and the wrapper) → build and load."""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import linecache
import time

import torch

from . import symbolic
from .codegen import renderers
from .codegen.wrapper import render_wrapper
from .errors import HeteroCompileError, one_line
from .graph import GraphLowering, module_path, op_name, warn_fallback
from .lowering.attention_pattern import rewrite_attention
from .planning.passes import build_plan
from .planning.plan import Plan
from .runtime import loaders


@dataclasses.dataclass
class Loadable:
    """What runs a compiled graph, as plain data: the wrapper's source and the kernels that run
    here, in their language.  ``load()`` makes the call (a C++ library comes from the build
    cache, built again if missing); AOTAutograd's cache pickles it (``aot_cache``)."""
    wrapper_source: str
    language: str             # the kernels' language (codegen.renderers, runtime.loaders)
    kernels: list             # (name, source, buffer count, per size symbol: is it a float)
    interpret: bool           # Triton kernels under the interpreter
    constants: dict           # the graph's constant tensors, by name
    profile: str              # the target profile's name
    fallbacks: dict           # op → its FallbackWarning's text, warned again by a process that loads this

    def warn_fallbacks(self) -> None:
        """The fallback warnings of a graph loaded from the cache: its lowering did not run here."""
        for op, what in self.fallbacks.items():
            warn_fallback(op, self.profile, what)

    def load(self):
        namespace = {"torch": torch, "empty_strided": torch.empty_strided, "reinterpret": _reinterpret,
                     "cdiv": lambda a, b: -(-a // b), "sync_threads": lambda: None, **self.constants}
        if self.kernels:
            namespace.update(loaders.load(self.language, self.kernels, self.interpret))
        source = self.wrapper_source
        filename = f"<torch_hetero wrapper {hashlib.sha256(source.encode()).hexdigest()[:12]}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), namespace)
        return namespace["call"]


@dataclasses.dataclass
class CompiledGraph:
    """A compiled graph: its plan, its rendered kernels, plus what ``explain()`` reports."""
    call: object
    loadable: Loadable
    plan: Plan
    rendered: dict                 # language → its rendered kernels, in plan order: the one that runs
                                   # here, and the target's (the same, or Triton beside the host's C++)
    fallbacks: collections.Counter
    code: dict                     # "<graph>.cpp" / "<graph>.triton.py" / "<graph>.py" → source
    compile_s: float               # seconds spent here: lowering to loading (a cache hit skips the build)

    def __post_init__(self):
        # AOTAutograd passes the argument list itself; an instance attribute survives the
        # functools.wraps that Dynamo puts around backward graphs
        self._boxed_call = True

    def __call__(self, args):
        return self.call(args)

    @property
    def kernels(self) -> tuple:
        """The rendered kernels that run here (their source, fused ATen ops, arguments)."""
        language = self.loadable.language
        return self.rendered.get(language, ())

    @property
    def fused_ops(self) -> dict:
        """Kernel name → the ATen ops its code computes (``plan.schedule_text`` reads it): as
        the code that runs here has it, else (a matmul the host leaves to its GEMM) the target's."""
        ops = {k.name: k.origins for kernels in self.rendered.values() for k in kernels}
        return {**ops, **{k.name: k.origins for k in self.kernels}}


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


def compile_graph(gm: torch.fx.GraphModule, options, name: str = "graph", estimate: bool = True) -> CompiledGraph:
    """``options``: ``options.Options`` — its profile's device model plans the kernels (fusing
    them unless ``fusion`` is False), its ``executor`` decides what runs here (the target's code
    is rendered either way), and with ``strict`` an op with no native lowering raises instead
    of running through ATen.  ``estimate``: estimate every step (for reports)."""
    start = time.perf_counter()
    profile = options.profile
    if not profile.target.attention:  # written-out attention and repeated KV heads: our flash attention
        gm = rewrite_attention(gm)
    graph = GraphLowering(gm, profile.target, profile.name, options.strict).run()
    runs = choose_executor(options.executor, profile, graph)
    language = renderers.HOST if runs == "host" else profile.target.language
    plan = build_plan(graph, profile, language, options.fusion, estimate)
    storage = graph.storage()
    rendered = {lang: tuple(renderers.render(k, lang, storage) for k in plan.kernels
                            if not (lang == language and k.library_only))  # nothing of its own to run here
                for lang in dict.fromkeys([profile.target.language, language])}
    code = {f"{name}.{renderers.RENDERERS[lang].suffix}": renderers.RENDERERS[lang].module(k.source for k in kernels)
            for lang, kernels in rendered.items() if kernels}
    running = rendered[language]
    wrapper_source = render_wrapper(graph, plan, {k.name: k for k in running},
                                    device=_device(graph) if runs == "native" else None)
    code[f"{name}.py"] = wrapper_source
    kernels = [(k.name, k.source, len(k.buffer_args), [symbolic.is_float_symbol(s) for s in k.symbol_args])
               for k in running]
    loadable = Loadable(wrapper_source, language, kernels, runs == "interpret", graph.constants, profile.name,
                        graph.fallback_notes)
    return CompiledGraph(loadable.load(), loadable, plan, rendered, graph.fallback_counts, code,
                         time.perf_counter() - start)


def choose_executor(option: str, profile, graph: GraphLowering) -> str:
    """"host" (generated C++), "interpret" (Triton's CPU interpreter) or "native" (Triton on a
    GPU) for this graph: Triton runs only for Triton-target profiles."""
    device = _device(graph)
    if profile.target.host_threads or option == "host" or (option == "auto" and device.type == "cpu"):
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
