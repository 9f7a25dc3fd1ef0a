"""Ops that call an ATen kernel from the generated wrapper on realized inputs: matmul family,
convolution and fused CPU attention (the host's tuned BLAS/oneDNN kernels beat a generated
loop nest).  Unlike fallbacks these are a choice, so the report lists them apart.  On a target
that generates every GEMM (``Target.generates_gemm``: no BLAS library) the planner turns each
matmul call into a generated kernel (``planning.fusion``); one it cannot generate falls back here."""
from __future__ import annotations

import torch

from ..virtualized import current_graph
from .registry import register_lowering

aten = torch.ops.aten

# What the generated GEMM's ``tl.dot`` takes: a target without a BLAS library runs other
# matmuls (integers, float64) as fallbacks, reported as its debt
GEMM_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MATMUL_OPS = (aten.mm, aten.bmm, aten.addmm)

EXTERN_OPS = (aten.mm, aten.bmm, aten.addmm, aten.convolution, aten.convolution_backward,
              aten._scaled_dot_product_flash_attention_for_cpu,
              aten._scaled_dot_product_flash_attention_for_cpu_backward)


def _extern(*args, **kwargs):
    graph = current_graph()
    op = graph.current_node.target
    if graph.target.generates_gemm and op.overloadpacket in MATMUL_OPS:
        dtype = graph.current_node.meta["val"].dtype
        if dtype not in GEMM_DTYPES:
            raise NotImplementedError(f"{op}: the target has no BLAS library and its generated GEMM "
                                      f"takes {', '.join(str(d) for d in GEMM_DTYPES)}, not {dtype}")
    return graph.call_aten(op, args, kwargs, kind="extern")


for _op in EXTERN_OPS:
    register_lowering(_op)(_extern)
