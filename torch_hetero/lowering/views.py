"""View lowerings: pure index remapping, no data movement.

A view of a realized buffer whose index stays linear becomes a new stride layout over the
same buffer (so extern calls and outputs receive real strided tensors); anything else is an
:class:`~torch_hetero.ir.IndexView` that consumers read through."""
from __future__ import annotations

import dataclasses

import sympy
import torch

from .. import ir, symbolic
from ..symbolic import FloorDiv, ModularIndexing
from ..virtualized import current_graph, current_origin
from .common import canonical_dim, is_one, meta_val, size_of
from .registry import register_lowering

aten = torch.ops.aten


def make_view(base: ir.TensorValue, size, reindex) -> ir.TensorValue:
    view = ir.IndexView(base, size, reindex, current_origin())
    strided = ir.as_strided(view)
    return strided if strided is not None else view


@register_lowering(aten.alias, aten.detach)
def alias(x):
    return x


@register_lowering(torch.ops.prims.rev)
def rev(x, dims):
    """flip: an index remapping (a view only in our IR: its strides would be negative)."""
    size = x.get_size()
    dims = {canonical_dim(d, x.dim()) for d in dims}
    return make_view(x, size, lambda index: [size[d] - 1 - i if d in dims else i for d, i in enumerate(index)])


@register_lowering(aten.permute)
def permute(x, dims):
    dims = [canonical_dim(d, x.dim()) for d in dims]
    inverse = [dims.index(i) for i in range(len(dims))]
    size = [x.get_size()[d] for d in dims]
    return make_view(x, size, lambda index: [index[inverse[i]] for i in range(len(dims))])


@register_lowering(aten.transpose.int)
def transpose(x, dim0, dim1):
    dims = list(range(x.dim()))
    a, b = canonical_dim(dim0, x.dim()), canonical_dim(dim1, x.dim())
    dims[a], dims[b] = dims[b], dims[a]
    return permute(x, dims)


@register_lowering(aten.t)
def t(x):
    return permute(x, list(range(x.dim()))[::-1])


@register_lowering(aten.expand)
def expand(x, sizes, implicit=False):
    size = size_of(meta_val())
    own = x.get_size()
    lead = len(size) - len(own)

    zero = [is_one(s) and not is_one(size[lead + i]) for i, s in enumerate(own)]

    def reindex(index):
        return [sympy.Integer(0) if broadcast else index[lead + i] for i, broadcast in enumerate(zero)]
    return make_view(x, size, reindex)


@register_lowering(aten.unsqueeze)
def unsqueeze(x, dim):
    dim = canonical_dim(dim, x.dim() + 1)
    size = x.get_size()[:dim] + [sympy.Integer(1)] + x.get_size()[dim:]
    return make_view(x, size, lambda index: index[:dim] + index[dim + 1:])


@register_lowering(aten.squeeze)
def squeeze(x, dim=None):
    own = x.get_size()
    if dim is None:
        dims = [i for i, s in enumerate(own) if s == 1]
    else:
        dims = [canonical_dim(d, x.dim()) for d in (dim if isinstance(dim, (list, tuple)) else [dim])]
        dims = [d for d in dims if own[d] == 1]
    keep = [i for i in range(len(own)) if i not in dims]

    def reindex(index):
        full = [sympy.Integer(0)] * len(own)
        for pos, i in enumerate(keep):
            full[i] = index[pos]
        return full
    return make_view(x, [own[i] for i in keep], reindex)


@register_lowering(aten.slice.Tensor)
def slice_(x, dim=0, start=None, end=None, step=1):
    dim = canonical_dim(dim, x.dim())
    size = size_of(meta_val())
    start = symbolic.sym(start or 0)
    if start.is_number and start < 0:
        start = sympy.Max(start + x.get_size()[dim], 0)
    if start.is_number:
        start = sympy.Integer(int(start))

    def reindex(index):
        index = list(index)
        index[dim] = start + index[dim] * step
        return index
    return make_view(x, size, reindex)


@register_lowering(aten.select.int)
def select(x, dim, index):
    dim = canonical_dim(dim, x.dim())
    index = symbolic.sym(index)
    if index.is_number and index < 0:
        index = index + x.get_size()[dim]
    return make_view(x, x.get_size()[:dim] + x.get_size()[dim + 1:],
                     lambda idx: list(idx[:dim]) + [index] + list(idx[dim:]))


@register_lowering(aten.as_strided)
def as_strided(x, size, stride, storage_offset=None):
    """Over memory we allocated (storage offset 0 is its data pointer) or a graph input
    (offsets relative to its traced one); not over an ATen op's result, which may be a view.
    A value that is no stride view of memory (a view of a computed value) is copied into a
    buffer of its own where eager's tensor fills its storage from offset 0 in that order."""
    base = ir.as_strided(x.realize() if isinstance(x, ir.Lazy) else x)
    if base is None and _fills_its_storage(current_graph().current_node.args[0].meta.get("val")):
        base = current_graph().realize(x)
    if base is None or not (base.buffer.owns_storage or isinstance(base.buffer, ir.InputBuffer)):
        raise NotImplementedError("as_strided of memory an ATen op returned")
    origin = getattr(base.buffer, "storage_offset", 0)
    offset = base.layout.offset if storage_offset is None else symbolic.sym(storage_offset) - origin
    layout = ir.Layout(tuple(symbolic.sym(s) for s in size), tuple(symbolic.sym(s) for s in stride),
                       base.get_dtype(), offset)
    return ir.StridedValue(base.buffer, layout)


def _fills_its_storage(value) -> bool:
    """Is the traced tensor contiguous, at storage offset 0, its storage no larger than it?"""
    return isinstance(value, torch.Tensor) and value.is_contiguous() and value.storage_offset() == 0 \
        and value.untyped_storage().nbytes() == value.numel() * value.element_size()


@register_lowering(aten.view.default, aten._unsafe_view, aten.reshape, aten.view_copy.default)
def view(x, sizes):
    return reshape(x, size_of(meta_val()))


def reshape(x: ir.TensorValue, new) -> ir.TensorValue:
    old = x.get_size()
    groups = _reshape_groups(old, new)
    strided = ir.as_strided(x)
    if strided is not None:
        layout = _strided_reshape(strided.layout, groups, new)
        if layout is not None:
            return ir.StridedValue(strided.buffer, layout)
    if any(size == 0 for size in old):  # no element is ever read: no div/mod by a zero size
        return ir.IndexView(x, new, lambda index: [sympy.Integer(0)] * len(old), current_origin())

    def reindex(index):
        out = []
        for (a0, a1), (b0, b1) in groups:
            flat = sum((i * s for i, s in zip(index[b0:b1], symbolic.contiguous_strides(new[b0:b1]))),
                       sympy.Integer(0))
            strides = symbolic.contiguous_strides(old[a0:a1])
            for k, (size, stride) in enumerate(zip(old[a0:a1], strides)):
                if size == 1:
                    out.append(sympy.Integer(0))
                elif a1 - a0 == 1:
                    out.append(flat)
                elif k == 0:
                    out.append(FloorDiv(flat, stride))
                else:
                    out.append(ModularIndexing(flat, stride, size))
        return out
    return ir.IndexView(x, new, reindex, current_origin())


def _reshape_groups(old, new):
    """Pair runs of old dims with runs of new dims that hold the same number of elements."""
    groups, i, j = [], 0, 0
    while i < len(old) or j < len(new):
        i0, j0 = i, j
        a = old[i] if i < len(old) else sympy.Integer(1)
        b = new[j] if j < len(new) else sympy.Integer(1)
        i, j = min(i + 1, len(old)), min(j + 1, len(new))
        while sympy.expand(a - b) != 0:
            if (i < len(old)) and (j >= len(new) or _smaller(a, b)):
                a, i = a * old[i], i + 1
            elif j < len(new):
                b, j = b * new[j], j + 1
            else:
                return [((0, len(old)), (0, len(new)))]
        groups.append(((i0, i), (j0, j)))
    return groups


def _smaller(a, b) -> bool:
    diff = sympy.expand(b - a)
    return bool(diff.is_positive) if diff.is_number else len(str(a)) <= len(str(b))


def _strided_reshape(layout: ir.Layout, groups, new):
    """The layout of ``new`` over the same storage, if every group of old dims is one
    evenly strided run (so no div/mod is needed)."""
    strides = [None] * len(new)
    for (a0, a1), (b0, b1) in groups:
        dims = [(s, st) for s, st in zip(layout.size[a0:a1], layout.stride[a0:a1]) if s != 1]
        for (s_outer, st_outer), (s_inner, st_inner) in zip(dims, dims[1:]):
            if sympy.expand(st_outer - st_inner * s_inner) != 0:
                return None
        inner = dims[-1][1] if dims else sympy.Integer(1)
        for k, st in enumerate(symbolic.contiguous_strides(new[b0:b1])):
            strides[b0 + k] = sympy.expand(st * inner)
    return ir.Layout(tuple(new), tuple(strides), layout.dtype, layout.offset)


@register_lowering(aten.view.dtype)
def view_dtype(x, dtype):
    """The same bytes read as another dtype of the same size (a quantized weight kept as uint8
    and read as fp8 or int8): the buffer itself, its loads in the new dtype.  Only of a graph
    input: a computed buffer may be kept in a kernel's registers (``define_local``) in its
    own dtype, where a view would have to reinterpret the bits."""
    if x.get_dtype().itemsize != dtype.itemsize:
        raise NotImplementedError(f"a view of {x.get_dtype()} as {dtype}, a dtype of another size")
    strided = ir.as_strided(x)
    if strided is None or not isinstance(strided.buffer, ir.InputBuffer):
        raise NotImplementedError("a dtype view of a computed value (only a graph input's is generated)")
    return ir.StridedValue(strided.buffer, dataclasses.replace(strided.layout, dtype=dtype))
