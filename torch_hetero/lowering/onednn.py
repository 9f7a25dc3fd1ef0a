"""The host libraries' fused and prepacked ops, which the host's planning puts in the ATen graph
(``planning.host_library``): oneDNN's convolution with its epilogue (bias, an activation, a
residual add) applied as post-ops while the output is in registers, on weights that freezing
may have prepacked into oneDNN's blocked layout; MKL's GEMM of a frozen linear layer on its
weight packed once.  Each is an extern call, in the convolution or BLAS family, with the
planner's reason as its note."""
from __future__ import annotations

import torch

from ..virtualized import current_graph
from .registry import register_lowering

ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
CONVOLUTION_UNARY = torch.ops.mkldnn._convolution_pointwise.default if ONEDNN else None
CONVOLUTION_BINARY = torch.ops.mkldnn._convolution_pointwise.binary if ONEDNN else None
REORDER_WEIGHT = torch.ops.mkldnn._reorder_convolution_weight.default if ONEDNN else None
FUSED_CONVOLUTIONS = frozenset({CONVOLUTION_UNARY, CONVOLUTION_BINARY}) if ONEDNN else frozenset()
MKL = torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")
PACKED_LINEAR = torch.ops.mkl._mkl_linear.default if MKL else None
REORDER_LINEAR_WEIGHT = torch.ops.mkl._mkl_reorder_linear_weight.default if MKL else None
NOTE = "hetero_note"   # the FX node's meta key holding the planner's reason


def weight_position(op) -> int:
    """Where a fused convolution takes its weight (the binary form takes the other operand first)."""
    return 2 if op == CONVOLUTION_BINARY else 1


def _library_call(*args):
    graph = current_graph()
    node = graph.current_node
    return graph.call_aten(node.target, args, {}, kind="extern", note=node.meta.get(NOTE, ""))


for _op in (CONVOLUTION_UNARY, CONVOLUTION_BINARY, PACKED_LINEAR):
    if _op is not None:
        register_lowering(_op)(_library_call)
