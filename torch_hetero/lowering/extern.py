"""Ops that call an ATen kernel from the generated wrapper on realized inputs: matmul family,
convolution and fused CPU attention (the host's tuned BLAS/oneDNN kernels beat a generated
loop nest).  Unlike fallbacks these are a choice, so the report lists them apart."""
from __future__ import annotations

import torch

from ..virtualized import current_graph
from .registry import register_lowering

aten = torch.ops.aten

EXTERN_OPS = (aten.mm, aten.bmm, aten.addmm, aten.convolution, aten.convolution_backward,
              aten._scaled_dot_product_flash_attention_for_cpu,
              aten._scaled_dot_product_flash_attention_for_cpu_backward)


def _extern(*args, **kwargs):
    graph = current_graph()
    return graph.call_aten(graph.current_node.target, args, kwargs, kind="extern")


for _op in EXTERN_OPS:
    register_lowering(_op)(_extern)
