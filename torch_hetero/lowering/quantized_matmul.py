"""Quantized matmuls: each is our matmul template on a target that generates GEMMs (Triton),
its dequantization in the operand loads and its scales in the epilogue, so no float copy of a
quantized operand reaches memory; on the host it is ATen's CPU kernel, a library call as the
host's other GEMMs are.

``aten._scaled_mm``: an fp8 matmul whose fp32 accumulator is multiplied by a scale per tensor
or per row of A and column of B, plus an optional bias, rounded to ``out_dtype``.  Each operand
is loaded as its bytes and fed to ``tl.dot`` in its own fp8 encoding where the profile's matrix
units take it (``Target.matrix_format``: Hopper's OCP e4m3fn/e5m2, MI300X's fnuz variants),
else decoded and rounded to the widest 16-bit format they take (exact: every fp8 value is a
bf16 and an fp16 value) — the target's *dtype debt*, said in the call's note.  It always
accumulates in fp32 (``use_fast_accum``, which lets Hopper's fp8 MMA keep fewer accumulator
bits, asks for less).  On the host ATen converts the operands to float and calls the BLAS.

``aten._weight_int8pack_mm(x, w, scales)``: weight-only int8, ``x @ w.T * scales`` with an
int8 weight ``[n, k]`` and a scale per output channel (what torchao's int8 weight-only
quantization calls on the CPU).  The weight is converted to x's dtype as it is loaded (exact:
every int8 is a bf16, fp16 and fp32 value) and multiplied in x's format; the scales multiply
the fp32 accumulator.

``aten._int_mm(a, b)``: int8 × int8 summed in int32, exactly; on Triton profiles whose matrix
units take int8 (all of them here) the template with int8 operands and an int32 accumulator
(never split along K: the partials would be fp32); elsewhere it falls back.  An unsigned A
(ATen's CPU kernel takes uint8 × int8: torchao's asymmetric activations on the CPU) is fed to
``tl.dot`` as ``a - 128`` (an int8) and 128 × B's column sums, summed by the template as it
loads B's tiles, are added back: exact (``GemmOperands.column_sums``).

``aten._weight_int4pack_mm_for_cpu(x, w, group_size, scales_and_zeros)``: ATen's CPU int4
kernel, ``(nibble - 8) * scale + zero`` per group of K, a library call on the host.  Its weight
is packed in blocks of rows as wide as the packing CPU's vectors (64 on AVX-512, 32 on AVX2),
a layout of that host only: on Triton profiles it falls back, saying so.  An int4 weight that
a generated kernel reads is bytes unpacked with shifts and masks in plain torch, below.

A plain mm/addmm/bmm whose operand a pointwise node computes from narrower data — the int8
weight-only linear ``x @ (w_int8.to(x.dtype) * scale).t()`` torchao traces to, an int4 weight
unpacked from bytes with its group's scale and zero — has ``dequantized_operands``: the
template may compute that operand as it loads each tile, so the float weight never reaches
memory (``planning.fusion`` decides where the template runs the call)."""
from __future__ import annotations

import sympy
import torch

from .. import ir
from ..dtypes import FLOAT8
from ..ops_protocol import LoadRecorder
from ..virtualized import current_graph, ops, record_origins, set_ops_handler
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
    wanted = _short(a) if a == b else f"mix of {_short(a)} and {_short(b)}"
    note = "generated scaled matmul: fp8 operands into the matrix units" if native else (
        f"generated scaled matmul: dtype debt, {graph.profile_name}'s matrix units take no {wanted}: "
        f"the operands run as {_short(dot_dtype)}")
    return graph.call_aten(graph.current_node.target, args, kwargs, kind="extern", note=note,
                           gemm=lambda realized, realized_kwargs, outputs: _operands(
                               {**dict(zip(_ARGUMENTS, realized)), **realized_kwargs}, dot_dtype))


def _short(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


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


@register_lowering(aten._weight_int8pack_mm)
def _weight_int8pack_mm(x, w, scales):
    graph = current_graph()
    if not graph.target.matmul_epilogue:
        return graph.call_aten(graph.current_node.target, (x, w, scales), {}, kind="extern")
    if len(x.get_size()) != 2 or w.get_dtype() != torch.int8:
        raise NotImplementedError("the generated weight-only int8 matmul takes a 2-d input and an int8 weight")
    return graph.call_aten(graph.current_node.target, (x, w, scales), {}, kind="extern",
                           note="generated weight-only int8 matmul: the weight converted in the operand load",
                           gemm=lambda realized, kwargs, outputs: _int8_weight_operands(*realized))


def _int8_weight_operands(x: ir.StridedValue, w: ir.StridedValue, scales: ir.StridedValue) -> ir.GemmOperands:
    load_x, load_w, load_scale = x.make_loader(), w.make_loader(), scales.make_loader()
    dtype = x.get_dtype()
    (m, k), n = x.get_size(), w.get_size()[0]
    return ir.GemmOperands(None, m, n, k, dtype, lambda g, i, kk: load_x([i, kk]),
                           lambda g, kk, j: ops.to_dtype(load_w([j, kk]), dtype), lambda g, i, j: [i, j],
                           lambda g, i, j, acc: ops.mul(acc, ops.to_dtype(load_scale([j]), torch.float32)))


@register_lowering(aten._weight_int4pack_mm_for_cpu)
def _weight_int4pack_mm_for_cpu(x, w, group_size, scales_and_zeros):
    graph = current_graph()
    if graph.target.matmul_epilogue:
        raise NotImplementedError(
            "its weight is packed in the host CPU's vector layout (ATen's _convert_weight_to_int4pack_for_cpu); "
            "a generated kernel reads an int4 weight kept as bytes and unpacked with shifts and masks")
    return graph.call_aten(graph.current_node.target, (x, w, group_size, scales_and_zeros), {}, kind="extern")


@register_lowering(aten._int_mm)
def _int_mm(a, b):
    graph = current_graph()
    if not graph.target.matmul_epilogue:
        return graph.call_aten(graph.current_node.target, (a, b), {}, kind="extern")
    if a.get_dtype() not in (torch.int8, torch.uint8) or b.get_dtype() != torch.int8:
        raise NotImplementedError(f"the generated int8 matmul takes int8 or uint8 x int8, not {a.get_dtype()} x {b.get_dtype()}")
    if graph.target.matrix_format(torch.int8) != "int8":
        raise NotImplementedError(f"the {graph.profile_name} matrix units take no int8: int32 sums would not be exact")
    note = "generated int8 matmul: int32 accumulator" if a.get_dtype() == torch.int8 else \
        "generated uint8 x int8 matmul: A - 128 into the int8 units, 128 x B's column sums added to the int32 accumulator"
    return graph.call_aten(graph.current_node.target, (a, b), {}, kind="extern", note=note,
                           gemm=lambda realized, kwargs, outputs: _int8_operands(*realized))


def _int8_operands(a: ir.StridedValue, b: ir.StridedValue) -> ir.GemmOperands:
    load_a, load_b = a.make_loader(), b.make_loader()
    (m, k), n = a.get_size(), b.get_size()[1]
    if a.get_dtype() == torch.uint8:   # a - 128 in int8, and 128 x b's column sums added back
        return ir.GemmOperands(None, m, n, k, torch.int8, lambda g, i, kk: ops.to_dtype(ops.sub(
            ops.to_dtype(load_a([i, kk]), torch.int32), ops.constant(128, torch.int32)), torch.int8),
            lambda g, kk, j: load_b([kk, j]), lambda g, i, j: [i, j], column_sums=128)
    return ir.GemmOperands(None, m, n, k, torch.int8, lambda g, i, kk: load_a([i, kk]),
                           lambda g, kk, j: load_b([kk, j]), lambda g, i, j: [i, j])


def dequantized_operands(args) -> tuple:
    """The ``ir.Dequantized`` operands of a realized mm/addmm/bmm call: each that is a whole
    pointwise node's buffer (its dims maybe permuted: a transposed weight) computed, without
    gathers, from data of a narrower dtype than its own."""
    operands = [a for a in args if isinstance(a, ir.StridedValue)][-2:]
    lead = (lambda g: [g]) if len(operands[0].layout.size) == 3 else (lambda g: [])
    found = []
    for which, value in zip("ab", operands):
        index_of = _producer_index(value)
        if index_of is None or not _narrower_sources(value.buffer.data):
            continue
        data = value.buffer.data

        def load(g, row, col, data=data, index_of=index_of):
            record_origins(data.origins)
            return data.value_at(index_of(lead(g) + [row, col]))
        found.append(ir.Dequantized(value.buffer.name, which, load))
    return tuple(found)


def _producer_index(value: ir.StridedValue):
    """operand index → the index of the pointwise node that writes ``value``'s buffer, where
    ``value`` views that whole buffer with its dims maybe permuted; else None."""
    buffer = value.buffer
    if not isinstance(buffer, ir.ComputedBuffer) or type(buffer.data) is not ir.Pointwise:
        return None
    own, view = buffer.layout, value.layout
    if view.offset != own.offset:
        return None
    dims = []
    for size, stride in zip(view.size, view.stride):
        matches = [d for d, (s, st) in enumerate(zip(own.size, own.stride)) if s == size and st == stride]
        if size != 1 and len(matches) != 1:
            return None
        dims.append(None if size == 1 else matches[0])
    if sorted(d for d in dims if d is not None) != [d for d, s in enumerate(own.size) if s != 1]:
        return None

    def index(operand_index):
        out = [sympy.Integer(0)] * len(own.size)
        for position, dim in enumerate(dims):
            if dim is not None:
                out[dim] = operand_index[position]
        return out
    return index


def _narrower_sources(data: ir.Pointwise) -> bool:
    """Does ``data`` read, without gathers, a buffer of a narrower dtype than it writes?"""
    recorder = LoadRecorder()
    with set_ops_handler(recorder):
        data.inner_fn([sympy.Symbol(f"x{d}", integer=True, nonnegative=True) for d in range(len(data.ranges))])
    return not recorder.indirect and any(d.itemsize < data.dtype.itemsize for d in recorder.dtypes.values())
