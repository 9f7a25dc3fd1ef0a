"""Dtype debt: matmuls in a number format the device's matrix units lack, run in a wider one.

A scaled (fp8) matmul on a target without the encoding is rounded to bf16 in our template
(``lowering/quantized_matmul.py``); on the host ATen converts it to float.  Each is listed with
the compute time the wider format costs: its FLOPs at the wider format's peak, minus the time
at twice that rate — what fp8 units run at over 16-bit ones on every profile here that has them
(h100/h200 1979 vs 989, mi300x 2615 vs 1307, rivos-sim 419 vs 210 TFLOP/s)."""
from __future__ import annotations

import dataclasses
from typing import Optional

import sympy
import torch

from ..dtypes import FLOAT8
from ..graph import op_name
from ..ir import SCALED_MATMUL
from .cost_model import dtype_name
from .plan import KernelPlan


@dataclasses.dataclass(frozen=True)
class DtypeDebt:
    step: str                  # the kernel ("kernel3") or call ("aten._scaled_mm.default") that runs it
    generated: bool            # a kernel of ours (else an ATen call)
    op: str                    # "aten._scaled_mm"
    layer: str                 # the module it came from
    wanted: torch.dtype        # the operands' format: float8_e4m3fn
    runs_as: torch.dtype       # what the matrix units take instead: bfloat16 (the host's ATen: float32)
    lost_us: Optional[float]   # None: symbolic sizes with no hint


def dtype_debt(work: list, profile, hints: dict) -> tuple:
    """The DtypeDebt of a plan's steps (``work``: KernelPlan and ExternPlan, in order)."""
    debt = []
    for item in work:
        call = item.group.matmul if isinstance(item, KernelPlan) else item.call
        if call is None or call.op != SCALED_MATMUL:
            continue
        runs_as = call.gemm.dtype if call.gemm is not None else torch.float32
        if runs_as in FLOAT8:
            continue
        (m, k), n = call.args[0].get_size(), call.args[1].get_size()[1]
        work_items = sympy.sympify(m * n * k).subs(hints)
        name = dtype_name(runs_as)
        peak = profile.peak_flops(name, matrix=name in profile.matrix_shapes)
        lost = 2.0 * int(work_items) / (2 * peak) * 1e6 if work_items.is_Integer else None
        generated = isinstance(item, KernelPlan)
        debt.append(DtypeDebt(item.name if generated else call.name, generated, op_name(call.op), call.layer,
                              call.args[0].get_dtype(), runs_as, lost))
    return tuple(debt)
