"""On the host, an int8 weight-only linear layer as torchao traces it — ``mm(x, w.t().to(x.dtype))
* scale`` with an int8 weight ``w`` [n, k] and a scale per output channel, the product maybe
viewed with its rows split (a [batch, sequence, k] input's) before the scale — is rewritten,
before lowering, as ATen's CPU kernel for it, ``_weight_int8pack_mm(x, w, scale)``: the
library reads the int8 weight directly, where the traced form converts the whole weight to
floats on every call and multiplies it by the BLAS (one thread, a 4096 x 4096 bf16 layer:
25.0 ms for eager's traced form against 2.2 ms at 1 row, 335 ms against 182 ms at 256 rows,
``python benchmarks/low_precision.py --rounds 15``).  The kernel applies the scale
to the fp32 accumulator before rounding once, where eager rounds the product to x's dtype
first: results differ by that rounding.  ATen's bf16 kernel crashes when K is not a multiple
of 16 (measured, torch 2.13): such layers keep the traced form.  In a frozen graph the
transposed weight is a constant already (``freezing.fold_constants`` folds the transpose, not
the conversion): its transpose is the weight.

Triton targets do not take this path: their template computes the converted weight in its
operand loads (``quantized_matmul.dequantized_operands``)."""
from __future__ import annotations

import torch

from .common import RESHAPES, is_call

aten = torch.ops.aten
_CONVERSIONS = (aten._to_copy.default, torch.ops.prims.convert_element_type.default)
_TRANSPOSES = (aten.t.default, aten.permute.default, aten.transpose.int)
_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def rewrite_int8_weight_only(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``gm`` (a copy if changed) with each int8 weight-only matmul ATen's CPU kernel can run
    made that call."""
    found = [(node, match) for node in gm.graph.nodes if (match := _match(node))]
    if not found:
        return gm
    graph, copied = torch.fx.Graph(), {}
    graph.output(graph.graph_copy(gm.graph, copied))
    for node, (*nodes, transposed) in found:
        mul, (x, weight, scale, view) = copied[node], [copied.get(n) for n in nodes]   # view may be None
        with graph.inserting_before(mul):
            if transposed:
                weight = graph.call_function(aten.t.default, (weight,))
                weight.meta["val"] = weight.args[0].meta["val"].t()
            call = graph.call_function(aten._weight_int8pack_mm.default, (x, weight, scale))
            if view is not None:   # the rows split as the product's view had them
                call.meta["val"] = view.args[0].meta["val"]
                call = graph.call_function(view.target, (call, *view.args[1:]))
        call.meta = dict(mul.meta)
        mul.replace_all_uses_with(call)
        graph.erase_node(mul)
    graph.eliminate_dead_code()
    return torch.fx.GraphModule(gm, graph)


def _match(node):
    """(x, int8 weight, scale, the view of the product or None, whether the weight is the
    transpose of the node given) of ``mul(mm(x, w.t().to(x.dtype)), scale)``, else None."""
    if node.op != "call_function" or node.target is not aten.mul.Tensor or len(node.args) != 2:
        return None
    for product, scale in (node.args, node.args[::-1]):
        view = product if is_call(product, *RESHAPES) and len(product.users) == 1 else None
        product = product.args[0] if view is not None else product
        if not is_call(product, aten.mm.default) or len(product.users) != 1 or not isinstance(scale, torch.fx.Node):
            continue
        x, converted = product.args
        if not is_call(converted, *_CONVERSIONS) or len(converted.users) != 1:
            continue
        source = converted.args[0]
        folded = not (is_call(source, *_TRANSPOSES) and (source.target is not aten.permute.default or
                                                     list(source.args[1]) == [1, 0]))
        weight = source if folded else source.args[0]   # folded: a transposed weight, a frozen constant
        x_meta, w_meta, s_meta = (getattr(n, "meta", {}).get("val") for n in (x, weight, scale))
        if not all(isinstance(m, torch.Tensor) for m in (x_meta, w_meta, s_meta)):
            continue
        if folded:
            if source.op != "get_attr" or w_meta.dim() != 2:
                continue
            w_meta = w_meta.t()
        n, k = w_meta.shape if w_meta.dim() == 2 else (None, None)
        if w_meta.dtype == torch.int8 and x_meta.dtype in _FLOATS and x_meta.dim() == 2 and \
                s_meta.dtype == x_meta.dtype and tuple(s_meta.shape) == (n,) and isinstance(k, int) and k % 16 == 0 \
                and w_meta.is_contiguous() and s_meta.is_contiguous():
            if view is None or tuple(view.meta["val"].shape[-1:]) == (n,):   # rows split, columns kept
                return x, weight, scale, view, folded
    return None
