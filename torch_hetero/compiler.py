"""One ATen graph → a callable, by passes: lower (``graph``) → plan (``planning.passes``: fuse,
tile, estimate, plan memory) → render (``codegen.renderers``, and the wrapper) → build and load."""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import linecache
import time

import torch
from torch._subclasses.fake_tensor import unset_fake_temporarily

from . import symbolic
from .codegen import renderers
from .codegen.wrapper import render_wrapper
from .errors import HeteroCompileError, one_line
from .graph import GraphLowering, module_path, op_name, warn_fallback
from .lowering.attention_pattern import rewrite_attention
from .lowering.freezing import fold_padding
from .lowering.int8_weight_pattern import rewrite_int8_weight_only
from .planning.gemm_choice import LIBRARY, UNTIMED, Timed, Tuning
from .planning import host_library
from .planning.passes import build_plan
from .planning.plan import Plan
from .planning.tiling import matmul_tile
from .runtime import autotune, loaders
from .runtime.kept_buffers import KeptBuffers


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
        namespace = {"torch": torch, "empty_strided": torch.empty_strided, "reinterpret": _reinterpret, "KeptBuffers": KeptBuffers,
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
    def target_language(self) -> str:
        """The language of the profile's target (``rendered`` holds it first)."""
        return next(iter(self.rendered))

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


def compile_graph(gm: torch.fx.GraphModule, options, name: str = "graph", estimate: bool = True,
                  tuning=None) -> CompiledGraph:
    """``options``: ``options.Options`` — its profile's device model plans the kernels (fusing
    them unless ``fusion`` is False), its ``executor`` decides what runs here (the target's code
    is rendered either way), with ``strict`` an op with no native lowering raises instead
    of running through ATen, and with ``autotune`` each GEMM's choice is timed on the GPU that
    runs it (``_tuning``).  ``estimate``: estimate every step (for reports); ``tuning``: GEMM
    choices given (``gemm_choice.Tuning``: what ``gpu_timer`` compiles), not timed here."""
    start = time.perf_counter()
    profile = options.profile
    graph, notes = lower_graph(gm, options)
    runs = choose_executor(options.executor, profile, graph)
    language = renderers.HOST if runs == "host" else profile.target.language
    if tuning is None and options.autotune:
        tuning = _tuning(graph, profile, options, runs)
    plan = build_plan(graph, profile, language, options.fusion, estimate, tuning, notes)
    storage = graph.storage()
    rendered = {lang: tuple(renderers.render(k, lang, storage) for k in plan.kernels if k.rendered_in(lang))
                for lang in dict.fromkeys([profile.target.language, language])}
    code = {f"{name}.{renderers.RENDERERS[lang].suffix}": renderers.RENDERERS[lang].module(k.source for k in kernels)
            for lang, kernels in rendered.items() if kernels}
    running = rendered[language]
    wrapper_source = render_wrapper(graph, plan, {k.name: k for k in running},
                                    device=_device(graph) if runs == "native" else None)
    code[f"{name}.py"] = wrapper_source
    kernels = [(k.name, k.source, len(k.buffer_args), [symbolic.is_float_symbol(s) for s in k.symbol_args])
               for k in running]
    constants = graph.constants
    if runs == "native":  # kernels read the constants where they read the inputs (a lifted CPU scalar too)
        with unset_fake_temporarily():  # AOTAutograd compiles under its fake mode: these are real tensors
            constants = {name: value.to(_device(graph)) for name, value in constants.items()}
    loadable = Loadable(wrapper_source, language, kernels, runs == "interpret", constants, profile.name,
                        graph.fallback_notes)
    return CompiledGraph(loadable.load(), loadable, plan, rendered, graph.fallback_counts, code,
                         time.perf_counter() - start)


def lower_graph(gm: torch.fx.GraphModule, options) -> tuple:
    """(GraphLowering, notes): ``gm`` rewritten for the profile (zero padding folded; on the host,
    oneDNN's layout, post-ops and prepacked weights, its notes; elsewhere, written-out attention
    as ours) and lowered."""
    profile = options.profile
    gm, notes = fold_padding(gm), ()
    if host_library.applies(profile):   # oneDNN's layout, post-ops and prepacked weights
        gm, gemms = host_library.convolutions_as_gemm(gm)
        gm, layout = host_library.plan_layout(gm, profile)
        gm = host_library.fuse_epilogues(gm, profile)
        gm = host_library.prepack_weights(gm)
        notes = tuple(note for note in (layout, gemms) if note)
    if not profile.target.attention:  # written-out attention and repeated KV heads: our flash attention
        gm = rewrite_attention(gm)
    if not profile.target.matmul_epilogue:  # the host: int8 weights read by ATen's CPU kernel
        gm = rewrite_int8_weight_only(gm)
    return GraphLowering(gm, profile.target, profile.name, options.strict).run(), notes


def plan_graph(gm: torch.fx.GraphModule, options):
    """``gm``'s plan on the options' profile, estimated, without code: lowered and planned as
    ``compile_graph`` does for the profile's own target (its language; the host's C++), never
    rendered, built or run, so its inputs may be on the meta device (the deployment planner
    estimates models too large for this host)."""
    return plan_lowered(*lower_graph(gm, options), options)


def plan_lowered(graph: GraphLowering, notes: tuple, options):
    """``plan_graph`` of a graph already lowered (``lower_graph``): the planner lowers a
    symbolic graph once and plans it at each size (its ``size_hints`` set to the point's)."""
    profile = options.profile
    language = renderers.HOST if profile.target.host_threads else profile.target.language
    return build_plan(graph, profile, language, options.fusion, True, None, notes)


def _tuning(graph: GraphLowering, profile, options, runs: str) -> Tuning:
    """max-autotune for this graph: its GEMMs timed on the GPU that runs it (cached on disk),
    or, where no GPU runs it, nothing timed and the plan says so."""
    calls = autotune.matmul_calls(graph)
    if runs != "native" or not calls or not profile.target.matmul_epilogue:
        return Tuning({}, UNTIMED)
    return autotune.tune(calls, profile, graph.size_hints, torch.cuda.get_device_name(),
                         lambda call: gpu_timer(call, graph.size_hints, options))


def gpu_timer(call, hints: dict, options, device: str = "cuda"):
    """The time function of one GEMM's candidates (``gemm_choice.candidates``): the library
    through ATen, or our template compiled in the candidate's tile (the same graph, lowering
    and renderer as any compile, its tile given), each timed on random operands of the GEMM's
    shape with Triton's ``do_bench`` (the median of repeated runs, milliseconds).
    ``device`` "cpu" with ``options.executor`` "interpret" runs the same candidates under the
    interpreter: what the tests check, as no GPU is lent to them."""
    from torch.fx.experimental.proxy_tensor import make_fx
    batch, m, n, k, dtype = call.matmul_shape(hints)
    a = torch.randn(batch, m, k, device=device).to(dtype)
    b = torch.randn(batch, k, n, device=device).to(dtype)
    gm = make_fx(lambda a, b: (torch.bmm(a, b),))(a, b)  # a graph returns a tuple, as AOTAutograd's do

    def run(candidate):
        if candidate == LIBRARY:
            return lambda: torch.bmm(a, b)
        shape = (batch, m, n, k, dtype)
        tile = matmul_tile(*candidate[1:], *shape, options.profile)
        forced = Tuning({shape: Timed(tile, 0.0, float("inf"), f"candidate {candidate}")})
        compiled = compile_graph(gm, dataclasses.replace(options, autotune=False), "candidate", False, forced)
        return lambda: compiled([a, b])

    def time_fn(candidate) -> float:
        from triton.testing import do_bench
        call_once = run(candidate)
        if device == "cpu":  # the interpreter: one run, to check what would be timed
            started = time.perf_counter()
            call_once()
            return time.perf_counter() - started
        return do_bench(call_once) * 1e-3
    return time_fn


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
