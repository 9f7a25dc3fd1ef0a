"""Reduction lowerings: one Reduction node per result, over any dims, keepdim or not."""
from __future__ import annotations

import sympy
import torch

from .. import ir, symbolic
from ..virtualized import current_graph, current_origin, ops
from .common import canonical_dim, make_pointwise, meta_val
from .registry import register_lowering
from .views import reshape

aten = torch.ops.aten


def _dims(x, dims) -> list[int]:
    """The dims reduced; a 0-d tensor "reduced over dim 0" (or -1) is left as it is."""
    if x.dim() == 0:
        return []
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return list(range(x.dim()))
    if isinstance(dims, int):
        dims = [dims]
    return sorted({canonical_dim(d, x.dim()) for d in dims})


def reduce(x: ir.TensorValue, dims, keepdim: bool, reduction_type: str, dtype: torch.dtype,
           map_fn=None, epilogue=None) -> ir.StridedValue:
    """Realize ``epilogue(reduction_type of map_fn(x) over dims)`` as a new buffer."""
    dims = _dims(x, dims)
    size = x.get_size()
    kept = [i for i in range(len(size)) if i not in dims]
    out_size = [sympy.Integer(1) if i in dims else s for i, s in enumerate(size)] if keepdim \
        else [size[i] for i in kept]
    out_positions = list(range(len(size))) if keepdim else kept
    loader = x.make_loader()
    src_dtype = x.get_dtype()

    def inner(index, rindex):
        full = [None] * len(size)
        for pos, i in zip(index, out_positions):
            if i not in dims:
                full[i] = pos
        for r, i in zip(rindex, dims):
            full[i] = r
        value = loader(full)
        return map_fn(value) if map_fn is not None else value

    node = ir.Reduction(dtype, tuple(out_size), tuple(size[i] for i in dims), reduction_type,
                        inner, src_dtype, current_origin(), epilogue)
    return current_graph().add_computed(node)


def _acc_dtype(x, out_dtype):
    return lambda v: ops.to_dtype(v, out_dtype) if x.get_dtype() != out_dtype else v


@register_lowering(aten.sum.dim_IntList, aten.sum.default)
def sum_(x, dims=None, keepdim=False, dtype=None):
    out = meta_val().dtype
    return reduce(x, dims, keepdim, "sum", out, _acc_dtype(x, out))


@register_lowering(aten.prod.dim_int, aten.prod.default)
def prod(x, dim=None, keepdim=False, dtype=None):
    out = meta_val().dtype
    return reduce(x, dim, keepdim, "prod", out, _acc_dtype(x, out))


@register_lowering(aten.mean.dim, aten.mean.default)
def mean(x, dims=None, keepdim=False, dtype=None):
    out = meta_val().dtype
    return reduce(x, dims, keepdim, "sum", out, _acc_dtype(x, out), _divide_by_count(x, dims, out))


def _divide_by_count(x, dims, dtype):
    count = symbolic.product([x.get_size()[d] for d in _dims(x, dims)])
    return lambda total: ops.truediv(total, ops.index_expr(count, dtype))


@register_lowering(aten.amax, aten.max.default)
def amax(x, dims=None, keepdim=False):
    return reduce(x, dims, keepdim, "max", x.get_dtype())


@register_lowering(aten.amin, aten.min.default)
def amin(x, dims=None, keepdim=False):
    return reduce(x, dims, keepdim, "min", x.get_dtype())


@register_lowering(aten.max.dim)
def max_dim(x, dim, keepdim=False):
    return amax(x, [dim], keepdim), reduce(x, [dim], keepdim, "argmax", torch.int64)


@register_lowering(aten.min.dim)
def min_dim(x, dim, keepdim=False):
    return amin(x, [dim], keepdim), reduce(x, [dim], keepdim, "argmin", torch.int64)


@register_lowering(aten.argmax)
def argmax(x, dim=None, keepdim=False):
    return _arg_reduce(x, dim, keepdim, "argmax")


@register_lowering(aten.argmin)
def argmin(x, dim=None, keepdim=False):
    return _arg_reduce(x, dim, keepdim, "argmin")


def _arg_reduce(x, dim, keepdim, kind):
    if dim is None:  # index into the flattened tensor
        flat = reshape(x, [symbolic.product(x.get_size())])
        out = reduce(flat, [0], False, kind, torch.int64)
        if keepdim:
            return reshape(out, [sympy.Integer(1)] * x.dim())
        return out
    return reduce(x, [dim], keepdim, kind, torch.int64)


def _truth_reduction(kind):
    def lower(x, dims=None, keepdim=False):
        to_bool = (lambda v: ops.ne(v, ops.constant(0, x.get_dtype()))) if x.get_dtype() != torch.bool else None
        return reduce(x, dims, keepdim, kind, torch.bool, to_bool)
    return lower


register_lowering(aten.any)(_truth_reduction("any"))
register_lowering(aten.all)(_truth_reduction("all"))


def _var(x, dims, correction, keepdim, dtype):
    """Two-pass variance: mean first, then the mean of squared deviations."""
    dims = _dims(x, dims)
    count = symbolic.product([x.get_size()[d] for d in dims])
    mean_keep = reduce(x, dims, True, "sum", dtype, _acc_dtype(x, dtype), _divide_by_count(x, dims, dtype))

    def squared_deviation(v, m):
        d = ops.sub(v, m)
        return ops.mul(d, d)
    deviations = make_pointwise(squared_deviation, [x, mean_keep], dtype)
    corr = 1 if correction is None else correction
    if float(corr) != int(corr):
        raise NotImplementedError("fractional variance correction")
    denom = sympy.Max(count - int(corr), 0)
    var = reduce(deviations, dims, keepdim, "sum", dtype,
                 epilogue=lambda total: ops.truediv(total, ops.index_expr(denom, dtype)))
    if keepdim:
        return var, mean_keep
    return var, reshape(mean_keep, [s for i, s in enumerate(x.get_size()) if i not in dims])


@register_lowering(aten.var.correction, aten.var.dim)
def var(x, dims=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(unbiased, bool):
        correction = 1 if unbiased else 0
    return _var(x, dims, correction, keepdim, meta_val().dtype)[0]


@register_lowering(aten.var_mean.correction)
def var_mean(x, dims=None, *, correction=None, keepdim=False):
    return _var(x, dims, correction, keepdim, meta_val()[0].dtype)


def _cumulative(kind):
    def lower(x, dim, dtype=None):
        return _scan(x, dim, kind)
    return lower


register_lowering(aten.cumsum)(_cumulative("sum"))
register_lowering(aten.cumprod)(_cumulative("prod"))


def _scan(x, dim, kind):
    """cumsum/cumprod: an ``ir.Scan`` along ``dim`` in the output dtype."""
    out = meta_val().dtype
    size = x.get_size()
    if x.dim() == 0 or (sympy.sympify(size[canonical_dim(dim, x.dim())]).is_number
                        and int(size[canonical_dim(dim, x.dim())]) <= 1):
        return make_pointwise(lambda v: v, [x], out)  # nothing to accumulate
    dim = canonical_dim(dim, x.dim())
    load = x.make_loader()
    rest = tuple(s for d, s in enumerate(size) if d != dim)
    cast = _acc_dtype(x, out)
    node = ir.Scan(out, rest, (size[dim],), kind,
                   lambda index, rindex: cast(load(list(index[:dim]) + list(rindex) + list(index[dim:]))),
                   x.get_dtype(), current_origin(), dim=dim)
    return current_graph().add_computed(node, ir.Layout.contiguous(tuple(size), out))
