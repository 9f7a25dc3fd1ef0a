"""Convolution, forward and backward.  Where the profile declares a convolution library
(``Target.convolution``) a convolution our implicit GEMM takes is lowered as below and the
planner prices the two (``planning.gemm_choice``: the library's call or our kernel); any other
is the library's ATen call.  Elsewhere it is generated, tiles from the device model:

* as an implicit GEMM on the matrix units (where the target generates its GEMMs): an
  ``ExternCall`` carrying ``ir.GemmOperands`` whose operands gather the input by the im2col
  index map inside the K loop (stride, padding, dilation; out of bounds → 0), never
  materialized; groups are the GEMM's batch dim.  Forward: M = N·OH·OW, N = OC/groups,
  K = C/groups·KH·KW.  grad_input: the transposed gather (an output position feeds an input
  position when the stride divides their distance), M = N·H·W, N = C/groups,
  K = OC/groups·KH·KW.  grad_weight: M = OC/groups, N = C/groups·KH·KW, K = N·OH·OW.  The
  output is stored through its eager layout (NCHW), the bias added by a pointwise node that
  fusion makes the GEMM's epilogue (with what follows: batch norm, ReLU).  The host executor
  runs the same call as ATen's convolution (``KernelPlan.library_gemm``);
* depthwise (one input channel per group) as a direct reduction over the window, forward and
  backward: no matrix unit needed.

Any number of spatial dims (1-d, 2-d, 3-d); a transposed convolution or a dtype ``tl.dot`` cannot take falls
back (the target's debt)."""
from __future__ import annotations

import dataclasses

import sympy
import torch

from .. import ir, symbolic
from ..symbolic import FloorDiv, ModularIndexing
from ..virtualized import current_graph, current_origin, ops
from .common import meta_val, new_pointwise, size_of
from .extern import GEMM_DTYPES
from .pooling import inside, unflat
from .reductions import reduce
from .registry import register_lowering

aten = torch.ops.aten


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Sizes of one convolution: input (N, C, *spatial), weight (OC, C/groups, *kernel),
    output (N, OC, *out)."""
    batch: sympy.Expr
    channels: sympy.Expr
    spatial: list
    out_channels: sympy.Expr
    kernel: list
    out: list
    stride: list
    padding: list
    dilation: list
    groups: int

    @property
    def group_channels(self):
        return FloorDiv(self.channels, self.groups) if self.groups != 1 else self.channels

    @property
    def group_out_channels(self):
        return FloorDiv(self.out_channels, self.groups) if self.groups != 1 else self.out_channels

    @property
    def depthwise(self) -> bool:
        return self.groups != 1 and sympy.expand(self.channels - self.groups) == 0

    def source(self, out, window) -> list:
        """The input position output position ``out`` reads through window offset ``window``."""
        return [o * s - p + r * d for o, r, s, p, d in zip(out, window, self.stride, self.padding, self.dilation)]

    def gather(self, load, n, channel, out, window, dtype):
        """The input at (n, channel) under ``window`` of ``out``: 0 in the padding."""
        source = self.source(out, window)
        if not any(self.padding):  # every window of an unpadded output lies inside the input
            return load([n, channel] + source)
        return ops.masked(inside(source, self.spatial), lambda: load([n, channel] + source), 0, dtype)

    def scatter_back(self, load, n, channel, position, window, dtype):
        """The output (gradient) at (n, channel) that reads input ``position`` through
        ``window``: 0 where none does (the stride does not divide the distance, or the output
        position lies outside).  The distance is shifted by whole strides to stay non-negative."""
        out, valid = [], None
        for x, r, s, p, d, size, k in zip(position, window, self.stride, self.padding, self.dilation, self.out,
                                          self.kernel):
            shift = -(-(k - 1) * d // s)   # whole strides covering the largest window offset
            distance = x + p - r * d + shift * s
            o = FloorDiv(distance, s) - shift
            conds = [ops.ge(_index(o), _index(0)), ops.lt(_index(o), _index(size))]
            if s != 1:
                conds.append(ops.eq(_index(ModularIndexing(distance, 1, s)), _index(0)))
            for cond in conds:
                valid = cond if valid is None else ops.logical_and(valid, cond)
            out.append(o)
        return ops.masked(valid, lambda: load([n, channel] + out), 0, dtype)


def _index(expr):
    return ops.index_expr(sympy.sympify(expr), torch.int64)


def _geometry(x_size, w_size, out_size, stride, padding, dilation, groups) -> _Geometry:
    spatial = len(x_size) - 2
    expand = (lambda v: list(v) * spatial if len(v) == 1 else list(v))
    # the output's channels, not the weight's: eager gives an input without channels none
    return _Geometry(x_size[0], x_size[1], list(x_size[2:]), out_size[1], list(w_size[2:]), list(out_size[2:]),
                     expand(stride), expand(padding), expand(dilation), int(groups))


def _priced(target, dtype, transposed: bool, weight, groups) -> bool:
    """Where the profile declares a convolution library, whether our implicit GEMM is priced
    against it (``planning.gemm_choice``): a GEMM the template takes, not depthwise (one input
    channel per group), its groups known.  Else it is the library's."""
    if not isinstance(groups, int) or transposed or dtype not in GEMM_DTYPES or not target.matmul_epilogue:
        return False
    return groups == 1 or sympy.expand(weight.get_size()[1] - 1) != 0


def _generated(dtype, transposed: bool) -> None:
    """Refuse (a fallback, the target's debt) what is not generated."""
    if transposed:
        raise NotImplementedError("the profile declares no convolution library and a transposed convolution "
                                  "is not generated")
    if dtype not in GEMM_DTYPES:
        raise NotImplementedError(f"the profile declares no convolution library and the generated convolution "
                                  f"takes {', '.join(str(d) for d in GEMM_DTYPES)}, not {dtype}")


def _eager_layout(meta) -> ir.Layout:
    return ir.Layout(tuple(size_of(meta)), tuple(symbolic.sym(s) for s in meta.stride()), meta.dtype)


def _to_float(value):
    return ops.to_dtype(value, torch.float32)


@register_lowering(aten.convolution)
def convolution(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    graph, meta = current_graph(), meta_val()
    if graph.target.convolution and not _priced(graph.target, meta.dtype, transposed, weight, groups):
        return graph.call_aten(aten.convolution.default, (x, weight, bias, stride, padding, dilation, transposed,
                                                          output_padding, groups), {}, kind="extern")
    _generated(meta.dtype, transposed)
    geo = _geometry(x.get_size(), weight.get_size(), size_of(meta), stride, padding, dilation, groups)
    if geo.depthwise:
        out = _depthwise(geo, x, weight, meta)
    elif graph.target.matmul_epilogue:
        out = graph.call_aten(aten.convolution.default, (x, weight, None, stride, padding, dilation, transposed,
                                                         output_padding, groups), {}, kind="extern",
                              gemm=lambda args, kwargs, outputs: _forward_gemm(geo, args[0], args[1]))
    else:
        raise NotImplementedError("the profile declares no convolution library and the target generates no GEMM")
    if bias is None:
        return out
    load, load_bias = out.make_loader(), bias.make_loader()
    return new_pointwise(lambda index: ops.to_dtype(ops.add(_to_float(load(index)), _to_float(load_bias([index[1]]))),
                                                    meta.dtype), size_of(meta), meta.dtype)


def _forward_gemm(geo: _Geometry, x: ir.StridedValue, weight: ir.StridedValue) -> ir.GemmOperands:
    load_x, load_w = x.make_loader(), weight.make_loader()
    cg, ocg = geo.group_channels, geo.group_out_channels
    rows = [geo.batch] + geo.out

    def a(g, i, kk):
        n, *out = unflat(i, rows)
        c, *window = unflat(kk, [cg] + geo.kernel)
        return geo.gather(load_x, n, g * cg + c, out, window, x.get_dtype())

    def b(g, kk, j):
        return load_w([g * ocg + j] + unflat(kk, [cg] + geo.kernel))

    def output(g, i, j):
        n, *out = unflat(i, rows)
        return [n, g * ocg + j] + out
    return ir.GemmOperands(geo.groups if geo.groups != 1 else None, symbolic.product(rows), ocg,
                           cg * symbolic.product(geo.kernel), x.get_dtype(), a, b, output)


@register_lowering(aten.convolution_backward)
def convolution_backward(grad, x, weight, bias_sizes, stride, padding, dilation, transposed, output_padding,
                         groups, output_mask):
    graph = current_graph()
    args = [grad, x, weight, bias_sizes, stride, padding, dilation, transposed, output_padding, groups]
    if graph.target.convolution and not _priced(graph.target, grad.get_dtype(), transposed, weight, groups):
        return graph.call_aten(aten.convolution_backward.default, tuple(args + [output_mask]), {}, kind="extern")
    metas = meta_val()
    _generated(grad.get_dtype(), transposed)
    geo = _geometry(x.get_size(), weight.get_size(), grad.get_size(), stride, padding, dilation, groups)
    if not geo.depthwise and not graph.target.matmul_epilogue:
        raise NotImplementedError("the profile declares no convolution library and the target generates no GEMM")
    results = [None, None, None]
    for position, gemm in ((0, _grad_input_gemm), (1, _grad_weight_gemm)):
        if not output_mask[position]:
            continue
        if geo.depthwise:
            results[position] = (_depthwise_grad_input if position == 0 else _depthwise_grad_weight)(
                geo, grad, x, weight, metas[position])
            continue
        mask = [index == position for index in range(3)]
        results[position] = graph.call_aten(
            aten.convolution_backward.default, tuple(args + [mask]), {}, kind="extern", output=position,
            gemm=lambda realized, kwargs, outputs, gemm=gemm: gemm(geo, *realized[:3]))[position]
    if output_mask[2]:
        results[2] = reduce(grad, [0] + list(range(2, grad.dim())), False, "sum", metas[2].dtype)
    return tuple(results)


def _grad_input_gemm(geo: _Geometry, grad: ir.StridedValue, x, weight: ir.StridedValue) -> ir.GemmOperands:
    load_grad, load_w = grad.make_loader(), weight.make_loader()
    cg, ocg = geo.group_channels, geo.group_out_channels
    rows = [geo.batch] + geo.spatial

    def a(g, i, kk):
        n, *position = unflat(i, rows)
        oc, *window = unflat(kk, [ocg] + geo.kernel)
        return geo.scatter_back(load_grad, n, g * ocg + oc, position, window, grad.get_dtype())

    def b(g, kk, j):
        oc, *window = unflat(kk, [ocg] + geo.kernel)
        return load_w([g * ocg + oc, j] + window)

    def output(g, i, j):
        n, *position = unflat(i, rows)
        return [n, g * cg + j] + position
    return ir.GemmOperands(geo.groups if geo.groups != 1 else None, symbolic.product(rows), cg,
                           ocg * symbolic.product(geo.kernel), grad.get_dtype(), a, b, output)


def _grad_weight_gemm(geo: _Geometry, grad: ir.StridedValue, x: ir.StridedValue, weight) -> ir.GemmOperands:
    load_grad, load_x = grad.make_loader(), x.make_loader()
    cg, ocg = geo.group_channels, geo.group_out_channels
    columns, depth = [cg] + geo.kernel, [geo.batch] + geo.out

    def a(g, i, kk):
        n, *out = unflat(kk, depth)
        return load_grad([n, g * ocg + i] + out)

    def b(g, kk, j):
        n, *out = unflat(kk, depth)
        c, *window = unflat(j, columns)
        return geo.gather(load_x, n, g * cg + c, out, window, x.get_dtype())

    def output(g, i, j):
        return [g * ocg + i] + unflat(j, columns)
    return ir.GemmOperands(geo.groups if geo.groups != 1 else None, ocg, symbolic.product(columns),
                           symbolic.product(depth), grad.get_dtype(), a, b, output)


def _depthwise(geo: _Geometry, x, weight, meta) -> ir.StridedValue:
    """out[n, oc, o] = sum over the window of x[n, oc // multiplier, source] · w[oc, 0, window]."""
    load_x, load_w, multiplier = x.make_loader(), weight.make_loader(), geo.group_out_channels

    def inner(index, rindex):
        n, oc, *out = index
        value = geo.gather(load_x, n, FloorDiv(oc, multiplier), out, rindex, x.get_dtype())
        return ops.mul(_to_float(value), _to_float(load_w([oc, 0] + list(rindex))))
    return _reduction(meta, geo.kernel, inner)


def _depthwise_grad_input(geo: _Geometry, grad, x, weight, meta) -> ir.StridedValue:
    """grad_x[n, c, p] = sum over the multiplier m and the window of
    grad[n, c·multiplier + m, o(p, window)] · w[c·multiplier + m, 0, window]."""
    load_grad, load_w, multiplier = grad.make_loader(), weight.make_loader(), geo.group_out_channels

    def inner(index, rindex):
        n, c, *position = index
        m, *window = rindex
        oc = c * multiplier + m
        value = geo.scatter_back(load_grad, n, oc, position, window, grad.get_dtype())
        return ops.mul(_to_float(value), _to_float(load_w([oc, 0] + window)))
    return _reduction(meta, [multiplier] + geo.kernel, inner)


def _depthwise_grad_weight(geo: _Geometry, grad, x, weight, meta) -> ir.StridedValue:
    """grad_w[oc, 0, window] = sum over n and o of grad[n, oc, o] · x[n, oc // multiplier, source]."""
    load_grad, load_x, multiplier = grad.make_loader(), x.make_loader(), geo.group_out_channels

    def inner(index, rindex):
        oc, _, *window = index
        n, *out = rindex
        value = geo.gather(load_x, n, FloorDiv(oc, multiplier), out, window, x.get_dtype())
        return ops.mul(_to_float(load_grad([n, oc] + out)), _to_float(value))
    return _reduction(meta, [geo.batch] + geo.out, inner)


def _reduction(meta, reduction_ranges, inner) -> ir.StridedValue:
    """A sum (in fp32) of ``inner`` over ``reduction_ranges``, in eager's layout."""
    node = ir.Reduction(meta.dtype, tuple(size_of(meta)), tuple(reduction_ranges), "sum", inner, torch.float32,
                        current_origin())
    return current_graph().add_computed(node, _eager_layout(meta))
