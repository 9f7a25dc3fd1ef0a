"""Lowerings that move data by computed index: cat, padding, scatter-into-slice, and the
indirect loads (gather, index, index_select, embedding)."""
from __future__ import annotations

import sympy
import torch

from .. import ir, symbolic
from .common import broadcast_loader, broadcast_shapes, canonical_dim, meta_val, new_pointwise, size_of
from ..virtualized import ops
from .registry import register_lowering

aten = torch.ops.aten


def _idx(expr):
    return ops.index_expr(expr, torch.int64)


def _in_range(expr, low, high):
    """ops bool: low <= expr < high (either bound may be None)."""
    conds = []
    if low is not None:
        conds.append(ops.ge(_idx(expr), _idx(low)))
    if high is not None:
        conds.append(ops.lt(_idx(expr), _idx(high)))
    result = conds[0]
    for cond in conds[1:]:
        result = ops.logical_and(result, cond)
    return result


@register_lowering(aten.cat)
def cat(tensors, dim=0):
    out = meta_val()
    size, dtype = size_of(out), out.dtype
    dim = canonical_dim(dim, len(size))
    pieces, offset = [], sympy.Integer(0)
    for t in tensors:
        if t.dim() == 1 and t.get_size()[0] == 0 and len(size) != 1:
            continue  # legacy empty tensor
        length = t.get_size()[dim]
        if length != 0:
            pieces.append((offset, offset + length, t.make_loader(), t.get_dtype()))
        offset = offset + length

    def inner(index):
        result = None
        for k, (start, end, load, src_dtype) in enumerate(pieces):
            def body(load=load, start=start, src_dtype=src_dtype):
                shifted = list(index)
                shifted[dim] = index[dim] - start
                value = load(shifted)
                return value if src_dtype == dtype else ops.to_dtype(value, dtype)
            if len(pieces) == 1:
                return body()
            mask = _in_range(index[dim], start if k else None, end if k < len(pieces) - 1 else None)
            value = ops.masked(mask, body, 0, dtype)
            result = value if result is None else ops.where(mask, value, result)
        return result
    if not pieces:
        return new_pointwise(lambda index: ops.constant(0, dtype), size, dtype)
    return new_pointwise(inner, size, dtype, len(pieces) + sum(ir.op_count(t) for t in tensors))


@register_lowering(aten.constant_pad_nd)
def constant_pad_nd(x, pad, value=0):
    size, dtype = size_of(meta_val()), x.get_dtype()
    own, load = x.get_size(), x.make_loader()
    lefts = [sympy.Integer(0)] * len(own)
    padded = [len(own) - 1 - k for k in range(len(pad) // 2)]
    for k, d in enumerate(padded):
        lefts[d] = symbolic.sym(pad[2 * k])

    def inner(index):
        shifted = [i - left for i, left in zip(index, lefts)]
        conds = [_in_range(shifted[d], 0, own[d]) for d in padded]
        mask = conds[0]
        for cond in conds[1:]:
            mask = ops.logical_and(mask, cond)
        return ops.masked(mask, lambda: load(shifted), value, dtype)
    return new_pointwise(inner, size, dtype, 2)


@register_lowering(aten.slice_scatter)
def slice_scatter(base, src, dim=0, start=None, end=None, step=1):
    dim = canonical_dim(dim, base.dim())
    length = base.get_size()[dim]
    start = symbolic.sym(start or 0)
    if start.is_number and start < 0:
        start = start + length
    count = src.get_size()[dim]
    base_load, src_load, dtype = base.make_loader(), src.make_loader(), base.get_dtype()

    def inner(index):
        offset = index[dim] - start
        mask = _in_range(offset, 0, count * step)
        if step != 1:
            mask = ops.logical_and(mask, ops.eq(_idx(symbolic.ModularIndexing(offset, 1, step)),
                                                _idx(sympy.Integer(0))))

        def from_src():
            shifted = list(index)
            shifted[dim] = symbolic.FloorDiv(offset, step) if step != 1 else offset
            return src_load(shifted)
        return ops.where(mask, ops.masked(mask, from_src, 0, dtype), base_load(index))
    return new_pointwise(inner, base.get_size(), dtype, 2)


@register_lowering(aten.select_scatter)
def select_scatter(base, src, dim, index_value):
    dim = canonical_dim(dim, base.dim())
    pos = symbolic.sym(index_value)
    if pos.is_number and pos < 0:
        pos = pos + base.get_size()[dim]
    base_load, src_load = base.make_loader(), src.make_loader()

    def inner(index):
        mask = ops.eq(_idx(index[dim]), _idx(pos))
        return ops.where(mask, src_load(list(index[:dim]) + list(index[dim + 1:])), base_load(index))
    return new_pointwise(inner, base.get_size(), base.get_dtype(), 2)


@register_lowering(aten.diagonal_scatter)
def diagonal_scatter(base, src, offset=0, dim1=0, dim2=1):
    """``src`` written over the ``offset`` diagonal of dims (dim1, dim2); ``src`` holds the other
    dims in order, then the diagonal position."""
    dim1, dim2 = canonical_dim(dim1, base.dim()), canonical_dim(dim2, base.dim())
    base_load, src_load = base.make_loader(), src.make_loader()
    rest = [d for d in range(base.dim()) if d not in (dim1, dim2)]

    def inner(index):
        on_diagonal = ops.eq(_idx(index[dim2] - index[dim1]), _idx(sympy.Integer(offset)))
        position = index[dim1] if offset >= 0 else index[dim2]

        def from_src():
            return src_load([index[d] for d in rest] + [position])
        return ops.where(on_diagonal, ops.masked(on_diagonal, from_src, 0, base.get_dtype()), base_load(index))
    return new_pointwise(inner, base.get_size(), base.get_dtype(), 2)


@register_lowering(aten.gather)
def gather(x, dim, index, sparse_grad=False):
    dim = canonical_dim(dim, x.dim())
    load, index_load, bound = x.make_loader(), index.make_loader(), x.get_size()[dim]

    def inner(idx):
        full = list(idx)
        full[dim] = ops.indirect_indexing(index_load(idx), bound)
        return load(full)
    return new_pointwise(inner, index.get_size(), x.get_dtype(), 2)


@register_lowering(aten.index_select)
def index_select(x, dim, index):
    if x.dim() == 0:  # the index can only be 0 (or -1): the value itself
        load = x.make_loader()
        return new_pointwise(lambda idx: load([]), size_of(meta_val()), x.get_dtype())
    dim = canonical_dim(dim, x.dim())
    load, index_load, bound = x.make_loader(), index.make_loader(), x.get_size()[dim]
    size = x.get_size()[:dim] + index.get_size()[:1] + x.get_size()[dim + 1:]

    def inner(idx):
        full = list(idx)
        full[dim] = ops.indirect_indexing(index_load([idx[dim]] if index.dim() else []), bound)
        return load(full)
    return new_pointwise(inner, size, x.get_dtype(), 2)


@register_lowering(aten.embedding)
def embedding(weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    load, index_load = weight.make_loader(), indices.make_loader()
    rows, nd = weight.get_size()[0], indices.dim()

    def inner(idx):
        return load([ops.indirect_indexing(index_load(idx[:nd]), rows), idx[nd]])
    return new_pointwise(inner, indices.get_size() + weight.get_size()[1:], weight.get_dtype(), 2)


def advanced_indexing(x, indices) -> tuple:
    """``x[indices]`` (tensor indices, None for a whole dim) as (its size, and a function from
    an index of it to the index of ``x`` it reads): the index tensors broadcast together; their
    dims sit where the indexed dims were if those are adjacent, else first (NumPy's rule)."""
    if any(i is not None and i.get_dtype() == torch.bool for i in indices):
        raise NotImplementedError("boolean mask indexing has a data-dependent shape")
    indices = list(indices) + [None] * (x.dim() - len(indices))
    positions = [p for p, i in enumerate(indices) if i is not None]
    bshape = broadcast_shapes(*[indices[p].get_size() for p in positions])
    loaders = {p: broadcast_loader(indices[p], bshape) for p in positions}
    adjacent = positions == list(range(positions[0], positions[-1] + 1))
    first = positions[0] if adjacent else 0
    own, nb = x.get_size(), len(bshape)
    rest = [own[p] for p in range(len(own)) if p not in loaders]
    size = rest[:first] + list(bshape) + rest[first:]

    def source_index(idx):
        bidx = idx[first:first + nb]
        others = iter(list(idx[:first]) + list(idx[first + nb:]))
        return [ops.indirect_indexing(loaders[p](bidx), own[p]) if p in loaders else next(others)
                for p in range(len(own))]
    return size, source_index


@register_lowering(aten.index.Tensor)
def index(x, indices):
    size, source_index = advanced_indexing(x, indices)
    load = x.make_loader()
    return new_pointwise(lambda idx: load(source_index(idx)), size, x.get_dtype(), 2)


def _triangle(x, diagonal, lower: bool):
    """tril/triu: keep elements on one side of ``diagonal`` of the last two dims, zero the rest."""
    load, dtype, nd = x.make_loader(), x.get_dtype(), x.dim()

    def inner(index):
        offset = index[nd - 1] - index[nd - 2]
        keep = ops.le(_idx(offset), _idx(diagonal)) if lower else ops.ge(_idx(offset), _idx(diagonal))
        return ops.where(keep, load(index), ops.constant(0, dtype))
    return new_pointwise(inner, x.get_size(), dtype, 2)


@register_lowering(aten.tril)
def tril(x, diagonal=0):
    return _triangle(x, symbolic.sym(diagonal), lower=True)


@register_lowering(aten.triu)
def triu(x, diagonal=0):
    return _triangle(x, symbolic.sym(diagonal), lower=False)
