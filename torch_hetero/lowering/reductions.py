"""Reduction lowerings: one Reduction node per result, over any dims, keepdim or not."""
from __future__ import annotations

import sympy
import torch

from .. import ir, symbolic
from ..virtualized import current_graph, current_origin, ops
from .common import canonical_dim, make_pointwise, meta_val, new_pointwise, output_read, size_of
from .registry import register_lowering
from .indexing import gather
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
    return amax(x, [dim], keepdim), reduce(x, [dim], keepdim, "argmax", torch.int64) if output_read(1) else None


@register_lowering(aten.min.dim)
def min_dim(x, dim, keepdim=False):
    return amin(x, [dim], keepdim), reduce(x, [dim], keepdim, "argmin", torch.int64) if output_read(1) else None


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
        return _scan(x, dim, kind, meta_val().dtype)
    return lower


register_lowering(aten.cumsum)(_cumulative("sum"))
register_lowering(aten.cumprod)(_cumulative("prod"))
register_lowering(aten.logcumsumexp)(_cumulative("logsumexp"))


def _scan(x, dim, kind, out):
    """An ``ir.Scan`` of ``kind`` along ``dim``: cumsum/cumprod/logcumsumexp in dtype ``out``,
    or (argmax/argmin) the int64 position of the running max/min."""
    size = x.get_size()
    if x.dim() == 0 or (sympy.sympify(size[canonical_dim(dim, x.dim())]).is_number
                        and int(size[canonical_dim(dim, x.dim())]) <= 1):  # nothing to accumulate
        if kind in ("argmax", "argmin"):
            return new_pointwise(lambda index: ops.constant(0, torch.int64), size, torch.int64)
        return make_pointwise(lambda v: v, [x], out)
    dim = canonical_dim(dim, x.dim())
    load = x.make_loader()
    rest = tuple(s for d, s in enumerate(size) if d != dim)
    cast = _acc_dtype(x, out) if kind not in ("argmax", "argmin") else (lambda v: v)
    node = ir.Scan(out, rest, (size[dim],), kind,
                   lambda index, rindex: cast(load(list(index[:dim]) + list(rindex) + list(index[dim:]))),
                   x.get_dtype(), current_origin(), dim=dim)
    return current_graph().add_computed(node, ir.Layout.contiguous(tuple(size), out))


def _running_extreme(kind):
    """cummax/cummin: the position of the running max/min (a NaN, once seen, stays; ties take
    the later position, as ATen), and the values there, on targets that have the kernel."""
    def lower(x, dim):
        if not current_graph().target.running_extremes:
            raise NotImplementedError(f"the target has no cum{kind[3:]} kernel")
        positions = _scan(x, dim, kind, torch.int64)
        return (gather(x, dim, positions) if x.dim() else make_pointwise(lambda v: v, [x], x.get_dtype()),
                positions)
    return lower


register_lowering(aten.cummax)(_running_extreme("argmax"))
register_lowering(aten.cummin)(_running_extreme("argmin"))


def argsort(x, dim, descending: bool):
    """The stable sorting permutation along ``dim`` (int64), an ``ir.Sort``, on targets that can
    sort (``Target.sorting``: a profile may turn it off, and sorting then falls back to ATen)."""
    if not current_graph().target.sorting:
        raise NotImplementedError("the target has no sorting kernel")
    size = x.get_size()
    dim = canonical_dim(dim, x.dim())
    if sympy.sympify(size[dim]).is_number and int(size[dim]) <= 1:  # nothing to order
        return new_pointwise(lambda index: ops.constant(0, torch.int64), size, torch.int64)
    load = x.make_loader()
    rest = tuple(s for d, s in enumerate(size) if d != dim)
    node = ir.Sort(torch.int64, rest, (size[dim],), "sort",
                   lambda index, rindex: load(list(index[:dim]) + list(rindex) + list(index[dim:])),
                   x.get_dtype(), current_origin(), dim=dim, descending=descending)
    return current_graph().add_computed(node, ir.Layout.contiguous(tuple(size), torch.int64))


def _as_row(lower):
    """A 0-d input sorted, ranked or selected from: as a one-element row, results reshaped to
    the op's output shapes."""
    def wrapped(x, *args, **kwargs):
        if x.dim() != 0:
            return lower(x, *args, **kwargs)
        outputs = lower(reshape(x, [sympy.Integer(1)]), *args, **kwargs)
        metas = meta_val()
        return tuple(reshape(value, size_of(meta)) for value, meta in zip(outputs, metas))
    return wrapped


@register_lowering(aten.sort.default, aten.sort.stable)
@_as_row
def sort(x, *args, dim=-1, descending=False, stable=None):
    if args:  # sort.default(self, dim, descending)
        dim, descending = (list(args) + [descending])[:2]
    if not stable and x.get_dtype() in (torch.float16, torch.bfloat16, torch.bool):
        _rare_ties(x, "an unstable sort")
    order = argsort(x, dim, descending)
    return gather(x, dim, order), order


def _at_position(x, order, dim, position, keepdim):
    """(values, indices) of ``x`` at sorted position ``position(index)`` (ops int64, per row)
    along ``dim``; ``dim`` is dropped unless ``keepdim``."""
    dim = canonical_dim(dim, x.dim())
    load, order_load, length = x.make_loader(), order.make_loader(), x.get_size()[dim]
    size = list(x.get_size())
    size = size[:dim] + [sympy.Integer(1)] * keepdim + size[dim + 1:]

    def row(index):
        return list(index[:dim]), list(index[dim + keepdim:])

    def indices(index):
        lead, tail = row(index)
        return order_load(lead + [ops.indirect_indexing(position(lead + tail), length)] + tail)

    def values(index):
        lead, tail = row(index)
        return load(lead + [ops.indirect_indexing(indices(index), length)] + tail)
    return new_pointwise(values, size, x.get_dtype(), 3), new_pointwise(indices, size, torch.int64, 2)


def _rare_ties(x, why):
    """Where eager's order among equal values is unspecified (topk/kthvalue's partial sorts,
    an unstable sort of 16-bit floats or bools), values that tie often run through ATen so the
    indices are the ones eager returns; float32/float64 rows rarely tie."""
    if x.get_dtype() not in (torch.float32, torch.float64):
        raise NotImplementedError(f"{why} of {x.get_dtype()}: ties are ordered as ATen orders them")


@register_lowering(aten.topk)
@_as_row
def topk(x, k, dim=-1, largest=True, sorted=True):
    _rare_ties(x, "topk")
    order = argsort(x, dim, descending=largest)
    dim = canonical_dim(dim, x.dim())
    order_load = order.make_loader()
    size = list(x.get_size())
    size[dim] = symbolic.sym(k)
    first = new_pointwise(lambda index: order_load(index), size, torch.int64)
    return gather(x, dim, first), first


@register_lowering(aten.kthvalue)
@_as_row
def kthvalue(x, k, dim=-1, keepdim=False):
    _rare_ties(x, "kthvalue")
    return _at_position(x, argsort(x, dim, False), dim, lambda index: ops.constant(k - 1, torch.int64), keepdim)


def _median(x, dim, keepdim, ignore_nan):
    """The lower median per row: NaNs sort last; with one in the row the median is the first
    NaN (unless ``ignore_nan``: the median of the numbers, or of the row if all are NaN)."""
    dim = canonical_dim(dim, x.dim())
    length = x.get_size()[dim]
    nans = reduce(x, [dim], False, "sum", torch.int64, lambda v: ops.to_dtype(ops.isnan(v), torch.int64))
    nan_load = nans.make_loader()
    n = ops.index_expr  # noqa: E731 — sizes as ops values

    def position(row_index):
        count = nan_load(row_index)
        numbers = ops.sub(n(length, torch.int64), count)
        middle = ops.floordiv(ops.sub(n(length, torch.int64), ops.constant(1, torch.int64)), ops.constant(2, torch.int64))
        if ignore_nan:
            lower = ops.floordiv(ops.sub(numbers, ops.constant(1, torch.int64)), ops.constant(2, torch.int64))
            return ops.where(ops.gt(numbers, ops.constant(0, torch.int64)), lower, middle)
        return ops.where(ops.gt(count, ops.constant(0, torch.int64)), numbers, middle)
    return _at_position(x, argsort(x, dim, False), dim, position, keepdim)


@register_lowering(aten.median.dim)
@_as_row
def median_dim(x, dim=0, keepdim=False):
    return _median(x, dim, keepdim, ignore_nan=False)


@register_lowering(aten.nanmedian.dim)
@_as_row
def nanmedian_dim(x, dim=0, keepdim=False):
    return _median(x, dim, keepdim, ignore_nan=True)


def _median_all(ignore_nan):
    """median()/nanmedian() of the whole tensor: the value over its flattened elements."""
    def lower(x):
        flat = reshape(x, [symbolic.product(x.get_size())]) if x.dim() != 1 else x
        return _median(flat, 0, False, ignore_nan)[0]
    return lower


register_lowering(aten.median.default)(_median_all(False))
register_lowering(aten.nanmedian.default)(_median_all(True))
