"""Average pooling (1-3 spatial dims, forward and backward) as windowed sums unrolled over the
(small, static) kernel window: elementwise over the output, so it fuses like any pointwise op."""
from __future__ import annotations

import itertools

import sympy
import torch

from ..symbolic import FloorDiv
from ..virtualized import ops
from .common import meta_val, new_pointwise, size_of
from .registry import register_lowering

aten = torch.ops.aten


def _idx(expr):
    return ops.index_expr(expr, torch.int64)


class _Windows:
    """The pooling windows along the trailing ``len(kernel)`` dims: window ``o`` starts at
    ``o * stride - padding`` and (ceil_mode aside) spans ``kernel`` elements."""

    def __init__(self, x_size, out_size, kernel, stride, padding, count_include_pad, divisor_override):
        spatial = len(kernel)
        self.inputs = list(x_size[-spatial:])
        self.outputs = list(out_size[-spatial:])
        self.kernel, self.stride, self.padding = list(kernel), list(stride or kernel), list(padding)
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def divisor(self, out_index, dtype):
        """The count an output element's sum is divided by, as ATen computes it."""
        if self.divisor_override:
            return ops.constant(self.divisor_override, dtype)
        count = None
        for o, size, k, s, p in zip(out_index, self.inputs, self.kernel, self.stride, self.padding):
            start = _idx(o * s - p)
            end = ops.minimum(ops.add(start, _idx(sympy.Integer(k))), _idx(size + p))
            if not self.count_include_pad:
                start = ops.maximum(start, _idx(sympy.Integer(0)))
                end = ops.minimum(end, _idx(size))
            length = ops.sub(end, start)
            count = length if count is None else ops.mul(count, length)
        return ops.to_dtype(count, dtype)


def _args(kernel_size, stride, padding, spatial):
    """Per-dim kernel, stride (default: the kernel) and padding; ATen accepts one value for all."""
    def expand(v, default):
        v = [v] if isinstance(v, int) else (list(v) if v else list(default))
        return v * spatial if len(v) == 1 else v
    kernel = expand(kernel_size, kernel_size)
    return kernel, expand(stride, kernel), expand(padding, [0])


def _avg_pool(spatial, x, kernel_size, stride, padding, count_include_pad, divisor_override):
    kernel, stride, padding = _args(kernel_size, stride, padding, spatial)
    out_size, dtype = size_of(meta_val()), x.get_dtype()
    windows = _Windows(x.get_size(), out_size, kernel, stride, padding, count_include_pad, divisor_override)
    load, lead = x.make_loader(), len(out_size) - spatial
    acc = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype

    def inner(index):
        out_index = index[lead:]
        total = None
        for offsets in itertools.product(*[range(k) for k in kernel]):
            source = [o * s - p + j for o, s, p, j in zip(out_index, stride, padding, offsets)]
            inside = None
            for i, size in zip(source, windows.inputs):
                cond = ops.logical_and(ops.ge(_idx(i), _idx(sympy.Integer(0))), ops.lt(_idx(i), _idx(size)))
                inside = cond if inside is None else ops.logical_and(inside, cond)
            value = ops.masked(inside, lambda source=source: ops.to_dtype(load(list(index[:lead]) + source), acc), 0, acc)
            total = value if total is None else ops.add(total, value)
        return ops.to_dtype(ops.truediv(total, windows.divisor(out_index, acc)), dtype)
    return new_pointwise(inner, out_size, dtype, 2)


def _avg_pool_backward(spatial, grad, x, kernel_size, stride, padding, count_include_pad, divisor_override):
    """Each input element gathers grad / divisor from the (at most ceil(k / s) per dim)
    windows that cover it."""
    kernel, stride, padding = _args(kernel_size, stride, padding, spatial)
    size, dtype = x.get_size(), grad.get_dtype()
    windows = _Windows(size, grad.get_size(), kernel, stride, padding, count_include_pad, divisor_override)
    load, lead = grad.make_loader(), len(size) - spatial
    acc = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype

    def inner(index):
        in_index = index[lead:]
        total = None
        for back in itertools.product(*[range(-(-k // s)) for k, s in zip(kernel, stride)]):
            outs = [FloorDiv(i + p, s) - t for i, p, s, t in zip(in_index, padding, stride, back)]
            covered = None
            for o, i, n, k, s, p in zip(outs, in_index, windows.outputs, kernel, stride, padding):
                cond = ops.logical_and(ops.ge(_idx(o), _idx(sympy.Integer(0))), ops.lt(_idx(o), _idx(n)))
                cond = ops.logical_and(cond, ops.lt(_idx(i), _idx(o * s - p + k)))
                covered = cond if covered is None else ops.logical_and(covered, cond)

            def share(outs=outs):
                g = ops.to_dtype(load(list(index[:lead]) + outs), acc)
                return ops.truediv(g, windows.divisor(outs, acc))
            value = ops.masked(covered, share, 0, acc)
            total = value if total is None else ops.add(total, value)
        return ops.to_dtype(total, dtype)
    return new_pointwise(inner, size, dtype, 2)


@register_lowering(aten.avg_pool2d)
def avg_pool2d(x, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    return _avg_pool(2, x, kernel_size, stride, padding, count_include_pad, divisor_override)


@register_lowering(aten.avg_pool3d)
def avg_pool3d(x, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    return _avg_pool(3, x, kernel_size, stride, padding, count_include_pad, divisor_override)


@register_lowering(aten.avg_pool2d_backward)
def avg_pool2d_backward(grad, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    return _avg_pool_backward(2, grad, x, kernel_size, stride, padding, count_include_pad, divisor_override)


@register_lowering(aten.avg_pool3d_backward)
def avg_pool3d_backward(grad, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    return _avg_pool_backward(3, grad, x, kernel_size, stride, padding, count_include_pad, divisor_override)
