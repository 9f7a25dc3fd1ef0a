"""oneDNN's fused convolutions, which the host's planning puts in the ATen graph
(``planning.host_library``): a convolution with its epilogue (bias, an activation, a residual
add) applied by the library as post-ops while the output is in registers, on weights that
freezing may have prepacked into oneDNN's blocked layout.  Each is an extern call, in the
convolution family (the profile's convolution library), with the planner's reason as its note."""
from __future__ import annotations

import torch

from ..virtualized import current_graph
from .registry import register_lowering

ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
CONVOLUTION_UNARY = torch.ops.mkldnn._convolution_pointwise.default if ONEDNN else None
CONVOLUTION_BINARY = torch.ops.mkldnn._convolution_pointwise.binary if ONEDNN else None
REORDER_WEIGHT = torch.ops.mkldnn._reorder_convolution_weight.default if ONEDNN else None
FUSED_CONVOLUTIONS = frozenset({CONVOLUTION_UNARY, CONVOLUTION_BINARY}) if ONEDNN else frozenset()
NOTE = "hetero_note"   # the FX node's meta key holding the planner's reason


def weight_position(op) -> int:
    """Where a fused convolution takes its weight (the binary form takes the other operand first)."""
    return 2 if op == CONVOLUTION_BINARY else 1


if ONEDNN:
    @register_lowering(CONVOLUTION_UNARY, CONVOLUTION_BINARY)
    def _fused_convolution(*args):
        graph = current_graph()
        node = graph.current_node
        return graph.call_aten(node.target, args, {}, kind="extern", note=node.meta.get(NOTE, ""))
