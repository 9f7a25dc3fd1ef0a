"""One graph's plan, built once by the planning passes (``build_plan``) and read by everything
after them — codegen, the wrapper, ``explain()``, the audit, the log and the goldens — so that
each decision (a kernel's nodes, what runs it, its tiles, its estimate) is made in one place
and nobody reads it from a side table or from rendered code.

The passes, in order: fuse (``fusion.group_nodes``: the kernels and their fusion reasons) →
tile (``tiling``: each kernel's cost analysis and block sizes, each matmul's tile, computed
once per shape) → estimate (``estimates``: every step in execution order) → plan memory
(``scheduler.plan_memory``: frees and reuse).  Lowering comes before (``graph``), rendering
after (``codegen.renderers``)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from ..device_models.target import LANGUAGES
from ..ir import ExternCall
from .cost_model import Estimate
from .kernel_analysis import KernelCost
from .loop_nest import Group
from .tiling import AttentionTiling, KernelTiling, MatmulTiling


@dataclasses.dataclass(frozen=True)
class KernelPlan:
    """One generated kernel."""
    name: str
    group: Group                  # its nodes, outer loops, buffers kept on chip, fusion reasons, fused matmul
    loads: tuple                  # the buffers its nodes load (loop_nest.loaded_buffers), in node order,
                                  # then those its template's dequantized operands load
    target: str                   # the language of the code that runs it (the executor's choice)
    cost: KernelCost              # the device-independent analysis (FLOPs, bytes, parallel work)
    tiling: KernelTiling          # strategy and block sizes on the profile
    matmul_tile: Optional[MatmulTiling] = None  # the fused matmul's tile on the profile (None: none, or ATen's GEMM)
    estimate: Optional[Estimate] = None         # on the profile; None when estimates are off
    attention_tile: Optional[AttentionTiling] = None  # a generated attention's tile (its group's call)

    @property
    def library_gemm(self) -> bool:
        """Its fused matmul runs as an ATen call just before it (the language that runs it has
        no generated GEMM: the host), so the kernel reads the matmul's output from memory."""
        return self.group.matmul is not None and not LANGUAGES[self.target]["matmul_epilogue"]

    @property
    def library_only(self) -> bool:
        """A generated matmul with no epilogue that the language running it leaves to its
        library GEMM (the host): the ATen call is the whole step, with no kernel to launch."""
        return self.library_gemm and not self.group.nodes

    def rendered_in(self, language: str) -> bool:
        """Has code of its own in ``language``: not a library GEMM alone where that language
        is the one running it, not a dequantization a template computes in that language."""
        return not ((language == self.target and self.library_only) or
                    (self.group.in_template and LANGUAGES[language]["matmul_epilogue"]))

    @property
    def buffers(self) -> list:
        """The buffers this kernel writes to memory (a generated matmul writes its output
        unless only the epilogue reads it; ATen's GEMM writes it itself)."""
        matmul = self.group.matmul
        if matmul is not None and not self.library_gemm and matmul.result.name not in self.group.local:
            return [b for b in matmul.outputs if b is not None] + self.group.stored
        return self.group.stored

    @property
    def reads(self) -> list:
        """Names of the buffers it reads from memory: what its nodes load (and its template's
        dequantized operands, ``loads``), less what it computes itself, plus its matmul's
        operands (loaded by the GEMM it generates, or read by ATen's in the same step)."""
        own = set(self.group.names)
        matmul = self.group.matmul
        if matmul is not None and not self.library_gemm:
            own |= {matmul.result.name} | self.group.dequantized   # the accumulator tile, never reloaded
        names = [name for name in self.loads if name not in own]
        return names + [name for name in (matmul.input_names() if matmul is not None else []) if name not in own]


@dataclasses.dataclass(frozen=True)
class ExternPlan:
    """One ATen call (a chosen extern or a fallback)."""
    call: ExternCall
    tile: Optional[MatmulTiling] = None       # a matmul's tile on the profile (None: not a matmul, or the host)
    estimate: Optional[Estimate] = None
    reason: str = ""                          # why a chosen extern is a call (a matmul: its library)


@dataclasses.dataclass(frozen=True)
class Step:
    work: "KernelPlan | ExternPlan"
    reuses: dict = dataclasses.field(default_factory=dict)   # new buffer → the dead buffer it takes
    frees: tuple = ()                                         # buffers dead after this step


@dataclasses.dataclass(frozen=True)
class Plan:
    steps: tuple                   # Step, in execution order
    peak_bytes: Optional[int] = None  # activations live at once at the peak (with estimates only)
    notes: tuple = ()              # whole-graph decisions made before lowering (the host's layout)
    dtype_debt: tuple = ()         # dtype_debt.DtypeDebt: matmuls in a format the matrix units lack

    @property
    def kernels(self) -> list:
        return [s.work for s in self.steps if isinstance(s.work, KernelPlan)]

    @property
    def externs(self) -> list:
        return [s.work for s in self.steps if isinstance(s.work, ExternPlan)]


def schedule_text(plan: Plan, fused_ops: dict) -> str:
    """A plan as stable text (the golden tests' form): per kernel its nodes (local ones
    marked), outer loops, tiling, fused ATen ops (``fused_ops``: kernel name → the ops its
    rendered code computes) and fusion decisions; per extern call its op and, for matmuls,
    the tile and the library called."""
    lines = list(plan.notes)
    for step in plan.steps:
        work = step.work
        if isinstance(work, KernelPlan) and not work.group.nodes:  # a matmul or an attention generated alone
            call = work.group.matmul
            outputs = ", ".join(b.name for b in call.outputs if b is not None)
            lines.append(f"{work.name}: {call.name} -> {outputs}; {work.matmul_tile or work.attention_tile}")
            lines.append(f"  fuses {', '.join(fused_ops[work.name])}")
            lines += [f"  {decision}" for decision in work.group.decisions]
        elif isinstance(work, KernelPlan):
            group = work.group
            nodes = ", ".join(f"{n.name}{' (local)' if n.name in group.local else ''}" for n in group.nodes)
            lines.append(f"{work.name}: {nodes}; outer ({', '.join(str(r) for r in group.outer)}); {work.tiling}")
            if group.matmul is not None:
                lines.append(f"  epilogue of {group.matmul.name}: {work.matmul_tile}")
            lines.append(f"  fuses {', '.join(fused_ops[work.name]) or '(copy)'}")
            lines += [f"  {decision}" for decision in group.decisions]
        else:
            detail = work.tile or work.call.note
            lines.append(f"{work.call.kind} {work.call.name}" + (f": {detail}" if detail else "")
                         + (f"; {work.reason}" if work.reason else ""))
    return "\n".join(lines)
