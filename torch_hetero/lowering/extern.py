"""Ops that call an ATen kernel from the generated wrapper on realized inputs: matmul family
and convolution (the host's tuned BLAS/oneDNN beats a generated loop nest)."""
from __future__ import annotations

import torch

from ..virtualized import current_graph
from .registry import register_lowering

aten = torch.ops.aten

EXTERN_OPS = (aten.mm, aten.bmm, aten.addmm, aten.convolution, aten.convolution_backward,
              aten._weight_int8pack_mm)


def _extern(*args, **kwargs):
    graph = current_graph()
    return graph.call_aten(graph.current_node.target, args, kwargs, kind="extern")


for _op in EXTERN_OPS:
    register_lowering(_op)(_extern)
