"""``aten._scaled_mm``: an fp8 matmul whose fp32 accumulator is multiplied by a scale per
tensor or per row of A and column of B, plus an optional bias, rounded to ``out_dtype``.

On a target that generates GEMMs (Triton) it is our matmul template: each operand is loaded
as its bytes and fed to ``tl.dot`` in its own fp8 encoding where the profile's matrix units
take it (``Target.matrix_format``: Hopper's OCP e4m3fn/e5m2, MI300X's fnuz variants),
else decoded and rounded to the widest 16-bit format they take (exact: every fp8 value is a
bf16 and an fp16 value) — the target's *dtype debt*, said in the call's note.  The scales and
bias are the template's epilogue, and it always accumulates in fp32 (``use_fast_accum``, which
lets Hopper's fp8 MMA keep fewer accumulator bits, asks for less).  On the host it is ATen's
CPU kernel, a library call as the host's other GEMMs are (it converts the operands to float and
calls the BLAS)."""
from __future__ import annotations

import torch

from .. import ir
from ..dtypes import FLOAT8
from ..virtualized import current_graph, ops
from .registry import register_lowering

aten = torch.ops.aten
_ARGUMENTS = ("a", "b", "scale_a", "scale_b", "bias", "scale_result", "out_dtype", "use_fast_accum")
# what a format the matrix units lack is rounded to instead, widest first
_WIDER = (("bf16", torch.bfloat16), ("fp16", torch.float16))


@register_lowering(aten._scaled_mm)
def _scaled_mm(*args, **kwargs):
    graph = current_graph()
    named = {**dict(zip(_ARGUMENTS, args)), **kwargs}
    if not graph.target.matmul_epilogue:
        return graph.call_aten(graph.current_node.target, args, kwargs, kind="extern")
    problem = scaled_mm_problem(named)
    if problem:
        raise NotImplementedError(problem)
    a, b = named["a"].get_dtype(), named["b"].get_dtype()
    target = graph.target
    native = a == b and target.matrix_format(a) == "fp8"
    dot_dtype = a if native else next((d for name, d in _WIDER if name in target.matrix_dtypes), torch.float32)
    note = "generated scaled matmul: fp8 operands into the matrix units" if native else (
        f"generated scaled matmul: dtype debt, {graph.profile_name}'s matrix units take no "
        f"{'mix of ' if a != b else ''}{str(a).removeprefix('torch.')}"
        f"{' and ' + str(b).removeprefix('torch.') if a != b else ''}: the operands run as "
        f"{str(dot_dtype).removeprefix('torch.')}")
    return graph.call_aten(graph.current_node.target, args, kwargs, kind="extern", note=note,
                           gemm=lambda realized, realized_kwargs, outputs: _operands(
                               {**dict(zip(_ARGUMENTS, realized)), **realized_kwargs}, dot_dtype))


def scaled_mm_problem(named: dict):
    """Why the generated template cannot compute a ``_scaled_mm`` call, or None."""
    a, b = named["a"], named["b"]
    if a.get_dtype() not in FLOAT8 or b.get_dtype() not in FLOAT8:
        return "the generated scaled matmul takes fp8 operands"
    if named.get("scale_result") is not None:
        return "the generated scaled matmul takes no scale_result"
    m, n = a.get_size()[0], b.get_size()[1]
    for scale, rows in ((named["scale_a"], (m, 1)), (named["scale_b"], (1, n))):
        size = tuple(scale.get_size())
        if not (all(s == 1 for s in size) or size == rows):
            return "the generated scaled matmul takes tensor-wise and row-wise scales, not blocks"
    return None


def _operands(named: dict, dot_dtype: torch.dtype) -> ir.GemmOperands:
    load_a, load_b = named["a"].make_loader(), named["b"].make_loader()
    m, k = named["a"].get_size()
    n = named["b"].get_size()[1]
    scale_a, scale_b, bias = named["scale_a"], named["scale_b"], named.get("bias")

    def scale(value: ir.StridedValue, index):
        """A scale tensor's element for output (i, j): its only one, or its row's/column's."""
        rank = len(value.get_size())
        whole = all(s == 1 for s in value.get_size())
        return value.make_loader()([0] * rank if whole else index)

    def epilogue(g, i, j, acc):
        out = ops.mul(ops.mul(acc, scale(scale_a, [i, 0])), scale(scale_b, [0, j]))
        if bias is not None:
            out = ops.add(out, ops.to_dtype(bias.make_loader()([j]), torch.float32))
        return out

    return ir.GemmOperands(None, m, n, k, dot_dtype, lambda g, i, kk: load_a([i, kk]),
                           lambda g, kk, j: load_b([kk, j]), lambda g, i, j: [i, j], epilogue)
