"""Scatter lowerings (index_put, scatter, scatter_add): a fresh copy of the tensor scattered
into, then an ``ir.Scatter`` node that writes the source into that copy in place, at
data-dependent positions.  Accumulation adds (serially on the host, atomically on Triton
targets); plain writes to a repeated index keep one of the values, as in eager."""
from __future__ import annotations

import sympy
import torch

from .. import ir, symbolic
from ..virtualized import current_graph, current_origin, ops
from .common import broadcast_loader, canonical_dim, is_one, is_tensor, make_pointwise, new_pointwise, scalar_loader
from .indexing import advanced_indexing
from .views import reshape
from .registry import register_lowering

aten = torch.ops.aten


def scatter_into(base, size, output_index, value, mode=None) -> ir.StridedValue:
    """``base`` with ``value(index)`` written at ``output_index(index)`` for every index of
    ``size``; ``mode`` "sum" adds instead."""
    graph, dtype = current_graph(), base.get_dtype()
    if mode is not None and not graph.target.scatter_add_16bit and dtype.itemsize < 4:
        raise NotImplementedError(f"the target has no portable {dtype} atomics")
    copy = graph.add_computed(ir.Pointwise(dtype, tuple(base.get_size()), base.make_loader(), current_origin()))
    node = ir.Scatter(dtype, tuple(size), value, current_origin(), 2, base=copy.buffer.name,
                      output_index=output_index, mode=mode)
    return graph.add_computed(node, copy.layout)


def _value_loader(values, size, dtype):
    load = broadcast_loader(values, size) if is_tensor(values) else scalar_loader(values, dtype)
    if is_tensor(values) and values.get_dtype() != dtype:
        return lambda index: ops.to_dtype(load(index), dtype)
    return load


@register_lowering(aten.index_put, aten._unsafe_index_put)
def index_put(x, indices, values, accumulate=False):
    masks = [i for i in indices if i is not None and i.get_dtype() == torch.bool]
    if masks:
        return _masked_put(x, indices, values, accumulate)
    size, output_index = advanced_indexing(x, indices)
    return scatter_into(x, size, output_index, _value_loader(values, size, x.get_dtype()),
                        "sum" if accumulate else None)


def _masked_put(x, indices, values, accumulate):
    """``x[mask] = v`` where ``v`` broadcasts over the selected elements (no per-element
    values): elementwise, no scatter."""
    mask = indices[0]
    trailing = x.dim() - mask.dim()
    if len(indices) != 1 or trailing < 0 or (is_tensor(values) and not all(
            is_one(size) for size in values.get_size()[:max(values.dim() - trailing, 0)])):
        raise NotImplementedError("boolean-mask index_put with per-element values has a data-dependent shape")

    def fn(v, m, new):
        return ops.where(m, ops.add(v, new) if accumulate else new, v)
    return make_pointwise(fn, [x, _align_leading(mask, x.dim()), values], x.get_dtype(), uncast=(1,))


def _align_leading(mask, ndim):
    """A mask over x's leading dims, broadcast over the trailing ones."""
    extra = ndim - mask.dim()
    if extra == 0:
        return mask
    load = mask.make_loader()
    return new_pointwise(lambda index: load(index[:mask.dim()]), list(mask.get_size()) + [1] * extra, torch.bool)


_IDENTITY = {"sum": 0, "prod": 1, "amax": float("-inf"), "amin": float("inf")}


def _reduce_into(x, size, output_index, value, reduce: str, include_self: bool):
    """scatter_reduce / index_reduce: combine the source into ``x`` with ``reduce`` (sum, prod,
    amax, amin, mean); without ``include_self`` the touched elements start from the identity."""
    dtype = x.get_dtype()
    if reduce == "mean":
        total = _reduce_into(x, size, output_index, value, "sum", include_self)
        start = new_pointwise(lambda index: ops.constant(int(include_self), dtype), x.get_size(), dtype)
        count = scatter_into(start, size, output_index, lambda index: ops.constant(1, dtype), "sum")
        divide = ops.truediv if dtype.is_floating_point else ops.floordiv

        def mean(t, c, v):  # untouched (count 0) keeps x; never divide by 0 (integer traps)
            empty = ops.eq(c, ops.constant(0, dtype))
            return ops.where(empty, v, divide(t, ops.where(empty, ops.constant(1, dtype), c)))
        return make_pointwise(mean, [total, count, x], dtype)
    if reduce not in _IDENTITY:
        raise NotImplementedError(f"scatter reduce={reduce!r}")
    if reduce == "prod" and not current_graph().target.scatter_multiply:
        raise NotImplementedError("the target has no atomic multiply")
    if not include_self:
        identity = _IDENTITY[reduce]
        if not dtype.is_floating_point and reduce in ("amax", "amin"):
            info = torch.iinfo(dtype)
            identity = info.min if reduce == "amax" else info.max
        x = scatter_into(x, size, output_index, lambda index: ops.constant(identity, dtype))
    return scatter_into(x, size, output_index, value, reduce)


def _along(x, dim, index, src, take_index):
    """(x's dim, output index function, value loader) for a scatter of ``src`` along ``dim``;
    ``take_index(index loader, idx)`` is the position along ``dim`` an element goes to."""
    dtype = x.get_dtype()
    if x.dim() == 0:  # every index is 0: all elements go to the one value
        def output_index(idx):
            return []
    else:
        dim = canonical_dim(dim, x.dim())
        index_load, bound = index.make_loader(), x.get_size()[dim]

        def output_index(idx):
            full = list(idx)
            full[dim] = ops.indirect_indexing(take_index(index_load, idx, dim), bound)
            return full
    return output_index, _source(src, dtype)


def _source(src, dtype):
    """The loader of a scatter's source (a tensor or a scalar), in ``dtype``."""
    if not is_tensor(src):
        return scalar_loader(src, dtype)
    load = src.make_loader()
    return (lambda idx: ops.to_dtype(load(idx), dtype)) if src.get_dtype() != dtype else load


def _elementwise_index(index_load, idx, dim):  # scatter: an index per source element
    return index_load(idx)


def _row_index(index_load, idx, dim):  # index_reduce: an index per slice along dim
    return index_load([idx[dim]])


@register_lowering(aten.scatter.src, aten.scatter.value)
def scatter(x, dim, index, src):
    if _one_per_slice(x, dim, index):
        return _select_per_slice(x, dim, index, src, lambda old, new: new)
    output_index, value = _along(x, dim, index, src, _elementwise_index)
    return scatter_into(x, index.get_size(), output_index, value)


@register_lowering(aten.scatter.reduce, aten.scatter.value_reduce)
def scatter_with_reduce(x, dim, index, src, reduce):
    output_index, value = _along(x, dim, index, src, _elementwise_index)
    return _reduce_into(x, index.get_size(), output_index, value, {"add": "sum", "multiply": "prod"}[reduce], True)


@register_lowering(aten.scatter_add)
def scatter_add(x, dim, index, src):
    if _one_per_slice(x, dim, index):
        return _select_per_slice(x, dim, index, src, ops.add)
    output_index, value = _along(x, dim, index, src, _elementwise_index)
    return scatter_into(x, index.get_size(), output_index, value, "sum")


def _one_per_slice(x, dim, index) -> bool:
    """Does ``index`` pick one position in every slice of ``x`` along ``dim`` (size 1 there,
    x's sizes elsewhere)?  Then no two source elements meet, and the scatter is elementwise."""
    if x.dim() == 0 or index.dim() != x.dim():
        return False
    dim = canonical_dim(dim, x.dim())
    return all(is_one(size) if d == dim else size == x.get_size()[d] for d, size in enumerate(index.get_size()))


def _select_per_slice(x, dim, index, src, combine):
    """A scatter of one element per slice as a select: position p along ``dim`` becomes
    ``combine(x, src)`` where p equals the slice's index, else keeps ``x`` (cross-entropy's
    backward: no zero-filled copy and serial scatter, and it fuses with its neighbours).  An
    out-of-range index (eager raises) matches no position and leaves its slice as it was."""
    dim = canonical_dim(dim, x.dim())
    x_load, index_load, value = x.make_loader(), index.make_loader(), _source(src, x.get_dtype())

    def inner(idx):
        at = list(idx)
        at[dim] = sympy.Integer(0)
        hit = ops.eq(ops.index_expr(idx[dim], torch.int64), ops.to_dtype(index_load(at), torch.int64))
        old = x_load(idx)
        return ops.where(hit, combine(old, value(at)), old)
    return new_pointwise(inner, x.get_size(), x.get_dtype(), 3)


@register_lowering(aten.scatter_reduce.two)
def scatter_reduce(x, dim, index, src, reduce, include_self=True):
    output_index, value = _along(x, dim, index, src, _elementwise_index)
    return _reduce_into(x, index.get_size(), output_index, value, reduce, include_self)


@register_lowering(aten.index_reduce)
def index_reduce(x, dim, index, source, reduce, include_self=True):
    output_index, value = _along(x, dim, index, source, _row_index)
    return _reduce_into(x, source.get_size(), output_index, value, reduce, include_self)


@register_lowering(aten.histc)
def histc(x, bins=100, min=0, max=0):
    """Counts per bin of a given range (an MoE's tokens per expert) as a scatter-add of ones:
    an element's bin is ``int((v - min) * bins / (max - min))``, ``max`` in the last bin, values
    outside the range (and NaN) counted nowhere — ATen's CPU kernel, computed in its dtype."""
    dtype = x.get_dtype()
    if min >= max or dtype not in (torch.float32, torch.float64):
        raise NotImplementedError("histc over the data's own range, or of 16-bit floats")
    low, high = torch.tensor(min, dtype=dtype), torch.tensor(max, dtype=dtype)
    width = (high - low).item()
    count = symbolic.product(x.get_size())
    flat = reshape(x, [count])
    load = flat.make_loader()

    def inside(index):
        value = load(index)
        return ops.logical_and(ops.ge(value, ops.constant(low.item(), dtype)),
                               ops.le(value, ops.constant(high.item(), dtype)))

    def position(index):
        value = load(index)
        scaled = ops.truediv(ops.mul(ops.sub(value, ops.constant(low.item(), dtype)), ops.constant(bins, dtype)),
                             ops.constant(width, dtype))
        bin_ = ops.to_dtype(ops.where(inside(index), scaled, ops.constant(0, dtype)), torch.int64)
        last = ops.constant(bins - 1, torch.int64)
        return [ops.indirect_indexing(ops.where(ops.gt(bin_, last), last, bin_), bins)]

    zeros = new_pointwise(lambda index: ops.constant(0, dtype), [sympy.Integer(bins)], dtype)
    ones = lambda index: ops.where(inside(index), ops.constant(1, dtype), ops.constant(0, dtype))  # noqa: E731
    return scatter_into(zeros, [count], position, ones, "sum")
