"""Tensor factories: constants and ranges become Pointwise nodes (no memory until used)."""
from __future__ import annotations

import torch

from .. import symbolic
from ..virtualized import ops
from .common import broadcast_loader, meta_val, new_pointwise, size_of
from .registry import register_lowering

aten = torch.ops.aten


def _constant(value):
    meta = meta_val()
    if isinstance(value, torch.SymInt):
        value = symbolic.sym(value)
    return new_pointwise(lambda index: ops.constant(value, meta.dtype) if not isinstance(value, symbolic.Expr)
                         else ops.index_expr(value, meta.dtype), size_of(meta), meta.dtype)


@register_lowering(aten.full.default, aten.full_like.default)
def full(size_or_like, fill_value, **_kwargs):
    return _constant(fill_value)


@register_lowering(aten.scalar_tensor)
def scalar_tensor(value, **_kwargs):
    return _constant(value)


@register_lowering(aten.empty.memory_format, aten.empty_strided, aten.empty_like, aten.empty_permuted)
def empty(*_args, **_kwargs):
    """Contents are unspecified; zeros cost nothing unless a consumer reads them."""
    return _constant(0)


@register_lowering(aten.zeros_like, aten.zeros.default)
def zeros(*_args, **_kwargs):
    return _constant(0)


@register_lowering(aten.ones_like, aten.ones.default)
def ones(*_args, **_kwargs):
    return _constant(1)


@register_lowering(aten.arange.start_step, aten.arange.start, aten.arange.default)
def arange(*args, **_kwargs):
    numbers = [a for a in args if isinstance(a, (int, float, symbolic.Expr))]
    start, step = (0, 1) if len(numbers) == 1 else (numbers[0], numbers[2] if len(numbers) > 2 else 1)
    meta = meta_val()
    if meta.dtype.is_floating_point:
        def inner(index):
            pos = ops.index_expr(index[0], torch.float64)
            value = ops.add(ops.constant(start, torch.float64), ops.mul(pos, ops.constant(step, torch.float64)))
            return ops.to_dtype(value, meta.dtype)
    else:
        def inner(index):
            return ops.index_expr(symbolic.sym(start) + index[0] * symbolic.sym(step), meta.dtype)
    return new_pointwise(inner, size_of(meta), meta.dtype)


@register_lowering(aten.copy.default)
def copy(target, src, non_blocking=False):
    """Functional copy: ``src`` broadcast to ``target``'s shape in ``target``'s dtype."""
    shape, dtype = target.get_size(), target.get_dtype()
    load = broadcast_loader(src, shape)
    cast = src.get_dtype() != dtype
    return new_pointwise(lambda index: ops.to_dtype(load(index), dtype) if cast else load(index), shape, dtype)
