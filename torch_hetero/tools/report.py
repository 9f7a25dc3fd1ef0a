"""``explain()``: compile and run once, then report kernels, fused ops, extern calls,
fallbacks, generated code and the cost model's estimates on the chosen device profile(s)."""
from __future__ import annotations

import collections
import dataclasses
from typing import Optional

import torch

from ..backend import collect_compiled_graphs, hetero_backend
from ..compiler import EagerGraph
from ..graph import op_name
from ..planning.plan import schedule_text


@dataclasses.dataclass(frozen=True)
class KernelInfo:
    name: str                      # "<graph>.<kernel>", e.g. "forward.kernel0"
    target: str                    # codegen target: "cpp"
    aten_ops: list                 # the ATen ops fused into it, in order of appearance
    estimate_us: Optional[float] = None
    bytes: Optional[float] = None
    flops: Optional[float] = None
    bound: Optional[str] = None    # "compute" | "memory" | "launch"
    tiling: str = ""               # strategy and block sizes on the device
    fusion: tuple = ()             # each fusion decision taken or refused, with its reason


@dataclasses.dataclass(frozen=True)
class ExternInfo:
    name: str                      # "<graph>: aten.mm.default"
    kind: str                      # "extern" (a chosen ATen kernel) or "fallback" (no lowering)
    estimate_us: Optional[float] = None
    bytes: Optional[float] = None
    flops: Optional[float] = None
    bound: Optional[str] = None
    tiling: str = ""               # a matmul's tile on the device ("" on the host: ATen's GEMM)
    op: str = ""                   # the op as ``Report.fallbacks`` keys it: "aten.sort"
    layer: str = ""                # the module it came from: "transformer.h.0.attn"


@dataclasses.dataclass(frozen=True)
class DtypeDebt:
    """A matmul in a format the device's matrix units lack, run in a wider one
    (``planning/dtype_debt.py``: how ``lost_us`` is estimated)."""
    name: str                      # the kernel or call: "inference.kernel0", "inference: aten._scaled_mm.default"
    op: str                        # "aten._scaled_mm"
    layer: str
    wanted: str                    # the operands' format: "float8_e4m3fn"
    runs_as: str                   # what the matrix units take instead: "bfloat16" (the host's ATen: "float32")
    lost_us: Optional[float]       # None: its sizes are symbolic (a dynamic-shape graph)


@dataclasses.dataclass(frozen=True)
class EagerInfo:
    name: str                      # the graph's report name: "inference", "backward_1"
    cause: str                     # why it could not be compiled, in one line
    aten_ops: dict                 # ATen op → calls in the graph (all of them ran eagerly)
    layers: dict                   # ATen op → the modules its calls came from


@dataclasses.dataclass
class Report:
    kernels: list
    externs: list                  # ExternInfo for matmul/conv/attention calls
    fallbacks: dict                # ATen op → times it ran through the fallback
    code: dict                     # "<graph>.cpp" / "<graph>.py" → generated source
    device: str = "cpu"
    fallback_calls: list = dataclasses.field(default_factory=list)  # ExternInfo per fallback call
    schedule: str = ""             # the plan as stable text: kernels, nodes, tiling, fusion reasons
    eager: list = dataclasses.field(default_factory=list)  # EagerInfo per graph that ran eagerly
    dtype_debt: list = dataclasses.field(default_factory=list)  # DtypeDebt per matmul in a format the device lacks

    @property
    def estimate_us(self) -> Optional[float]:
        """Estimated time of every kernel, extern and fallback call on ``device`` (None when a
        graph ran eagerly: the model has no estimate for it)."""
        steps = self.kernels + self.externs + self.fallback_calls
        if self.eager or not steps or any(s.estimate_us is None for s in steps):
            return None
        return sum(s.estimate_us for s in steps)

    def __str__(self) -> str:
        total = self.estimate_us
        lines = [f"torch_hetero report (device: {self.device})",
                 f"  {len(self.kernels)} generated kernel(s), {len(self.externs)} extern call(s), "
                 f"{sum(self.fallbacks.values())} fallback call(s)"
                 + (f", {len(self.eager)} graph(s) ran eagerly" if self.eager else "")
                 + (f"; estimated {total:.1f} us" if total is not None else "")]
        for kernel in self.kernels:
            lines.append(f"  {kernel.name:<24} [{kernel.target}] {_cost(kernel)}fuses "
                         f"{', '.join(kernel.aten_ops) or '(copy)'}")
            lines.append(f"  {'':<24} {kernel.tiling}")
            lines += [f"  {'':<24} {decision}" for decision in kernel.fusion]
        for extern in self.externs:
            lines.append(f"  {extern.name:<24} [extern ATen] {_cost(extern)}{extern.tiling}")
        if self.fallbacks:
            lines.append("  fallbacks (no native lowering; ran the ATen op):")
            lines += [f"    {op}: {count}" for op, count in sorted(self.fallbacks.items())]
        elif not self.eager:
            lines.append("  no fallbacks")
        if self.dtype_debt:
            lines.append("  dtype debt (formats the matrix units lack, run in a wider one):")
            lines += [f"    {d.name}: {d.op}{f' in {d.layer}' if d.layer else ''}, {d.wanted} as {d.runs_as}, "
                      + (f"~{d.lost_us:.3g} us lost" if d.lost_us is not None else "symbolic sizes")
                      for d in self.dtype_debt]
        for graph in self.eager:
            lines.append(f"  {graph.name} ran eagerly: {graph.cause}")
            lines.append(f"  {'':<24} its ATen ops: "
                         + ", ".join(f"{op} x{n}" for op, n in sorted(graph.aten_ops.items())))
        return "\n".join(lines)


def _cost(step) -> str:
    if step.estimate_us is None:
        return ""
    return f"{step.estimate_us:8.2f} us {step.bound:<7} "


def explain(fn, *args, device=None, **kwargs):
    """Compile ``fn`` (a function or module) with the hetero backend for ``device`` (a profile
    name or path; default: the usual selection), run it once on ``args`` and report what was
    generated and what it should cost there.  ``device`` may be a list: then a dict of
    reports keyed by each device as given (a name, or a file's path).  Backward graphs appear if the run triggers them."""
    if isinstance(device, (list, tuple)):
        return {str(d): explain(fn, *args, device=d, **kwargs) for d in device}
    options = {"device": device} if device is not None else {}
    graphs = compile_and_run(fn, args, kwargs, options)
    return report_of(graphs, str(device or "cpu"))


def compile_and_run(fn, args, kwargs, options: dict) -> list:
    """Compile ``fn`` with the hetero backend and ``options``, run it once on ``args``: the
    (graph kind, CompiledGraph, profile name) of every graph compiled on the way."""
    return run_compiled(fn, args, kwargs, options)[0]


def run_compiled(fn, args, kwargs, options: dict) -> tuple:
    """``compile_and_run``'s graphs, and what the compiled ``fn`` returned."""
    def backend(gm, example_inputs):
        return hetero_backend(gm, example_inputs, options=options)
    compiled = torch.compile(fn, backend=backend)
    with collect_compiled_graphs() as graphs:
        output = compiled(*args, **kwargs)
    return graphs, output


def report_of(graphs: list, default_device: str) -> Report:
    """The Report of graphs from ``compile_and_run`` (``default_device`` names it if none was compiled)."""
    kernels, externs, fallback_calls, code, schedule, eager, dtype_debt = [], [], [], {}, [], [], []
    fallbacks: collections.Counter = collections.Counter()
    device_name = None
    for prefix, (kind, graph, profile_name) in zip(graph_prefixes(graphs), graphs):
        device_name = profile_name
        if isinstance(graph, EagerGraph):
            eager.append(EagerInfo(prefix, graph.cause, dict(graph.ops), graph.layers))
            continue
        fused_ops = graph.fused_ops
        dtype_debt += [DtypeDebt(f"{prefix}.{d.step}" if d.generated else f"{prefix}: {d.step}",
                                 d.op, d.layer, str(d.wanted).removeprefix("torch."),
                                 str(d.runs_as).removeprefix("torch."), d.lost_us) for d in graph.plan.dtype_debt]
        for kernel in graph.plan.kernels:
            if kernel.group.in_template and not kernel.rendered_in(graph.target_language):
                continue   # here the host's, for ATen's GEMM: on the device its template computes it
            kernels.append(KernelInfo(f"{prefix}.{kernel.name}", kernel.target, list(fused_ops[kernel.name]),
                                      **_estimate_fields(kernel.estimate),
                                      tiling=_kernel_tiling(kernel), fusion=tuple(kernel.group.decisions)))
        for extern in graph.plan.externs:
            call = extern.call
            info = ExternInfo(f"{prefix}: {call.name}", call.kind, **_estimate_fields(extern.estimate),
                              tiling=str(extern.tile) if extern.tile else call.note,
                              op=call.device_op or op_name(call.op), layer=call.layer)
            (externs if call.kind == "extern" else fallback_calls).append(info)
        schedule.append(f"{prefix}:\n{schedule_text(graph.plan, fused_ops)}")
        fallbacks.update(graph.fallbacks)
        code.update({f"{prefix}{name[len(kind):]}": source for name, source in graph.code.items()})
    return Report(kernels, externs, dict(fallbacks), code, device_name or default_device, fallback_calls,
                  "\n".join(schedule), eager, dtype_debt)


def graph_prefixes(graphs: list) -> list:
    """How reports name each graph: its kind, numbered from the second of a kind on
    ("inference", "inference_1", …); kernels are "<prefix>.<kernel>"."""
    seen: collections.Counter = collections.Counter()
    prefixes = []
    for kind, _, _ in graphs:
        prefixes.append(kind if not seen[kind] else f"{kind}_{seen[kind]}")
        seen[kind] += 1
    return prefixes


def _kernel_tiling(kernel) -> str:
    matmul = kernel.group.matmul
    if matmul is not None and not kernel.group.nodes:
        return f"{matmul.name} generated alone {kernel.matmul_tile or kernel.attention_tile}"
    return str(kernel.tiling) + (f"; epilogue of {matmul.name} {kernel.matmul_tile}" if matmul else "")


def _estimate_fields(estimate) -> dict:
    if estimate is None:
        return {}
    return {"estimate_us": estimate.time_us, "bytes": estimate.bytes, "flops": estimate.flops,
            "bound": estimate.bound}
