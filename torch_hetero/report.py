"""``explain()``: compile and run once, then report kernels, fused ops, fallbacks and code."""
from __future__ import annotations

import collections
import dataclasses

import torch

from .backend import collect_compiled_graphs, hetero_backend


@dataclasses.dataclass(frozen=True)
class KernelInfo:
    name: str        # "<graph>.<kernel>", e.g. "forward.kernel0"
    target: str      # codegen target: "cpp"
    aten_ops: list   # the ATen ops fused into it, in order of appearance


@dataclasses.dataclass
class Report:
    kernels: list
    externs: list                   # ATen ops called natively (matmul, conv): "<graph>: aten.mm"
    fallbacks: dict                 # ATen op → times it ran through the fallback
    code: dict                      # "<graph>.cpp" / "<graph>.py" → generated source
    device: str = "cpu"

    def __str__(self) -> str:
        lines = [f"torch_hetero report (device: {self.device})",
                 f"  {len(self.kernels)} generated kernel(s), {len(self.externs)} extern call(s), "
                 f"{sum(self.fallbacks.values())} fallback call(s)"]
        for kernel in self.kernels:
            lines.append(f"  {kernel.name:<24} [{kernel.target}] fuses {', '.join(kernel.aten_ops) or '(copy)'}")
        for extern in self.externs:
            lines.append(f"  {extern:<24} [extern ATen]")
        if self.fallbacks:
            lines.append("  fallbacks (no native lowering; ran the ATen op):")
            lines += [f"    {op}: {count}" for op, count in sorted(self.fallbacks.items())]
        else:
            lines.append("  no fallbacks")
        return "\n".join(lines)


def explain(fn, *args, device=None, **kwargs) -> Report:
    """Compile ``fn`` (a function or module) with the hetero backend, run it once on ``args``
    and report what was generated.  Backward graphs appear if the run triggers them."""
    options = {"device": device} if device is not None else {}

    def backend(gm, example_inputs):
        return hetero_backend(gm, example_inputs, options=options)
    compiled = torch.compile(fn, backend=backend)
    with collect_compiled_graphs() as graphs:
        compiled(*args, **kwargs)
    kernels, externs, fallbacks, code = [], [], collections.Counter(), {}
    seen: collections.Counter = collections.Counter()
    for kind, graph in graphs:
        prefix = kind if not seen[kind] else f"{kind}_{seen[kind]}"
        seen[kind] += 1
        for kernel in graph.kernels:
            kernels.append(KernelInfo(f"{prefix}.{kernel.name}", kernel.target, list(kernel.origins)))
        externs += [f"{prefix}: {call.name}" for call in graph.externs if call.kind == "extern"]
        fallbacks.update(graph.fallbacks)
        code.update({f"{prefix}{name[len(kind):]}": source for name, source in graph.code.items()})
    return Report(kernels, externs, dict(fallbacks), code, device or "cpu")

