"""Average pooling (1-3 spatial dims, forward and backward) and max pooling (forward, with
indices) unrolled over the (small, static) kernel window: elementwise over the output, so
each fuses like any pointwise op.  A window past ``UNROLLED_WINDOW`` elements (a global pool
written as ``AvgPool2d(640)``) is a loop instead: a reduction for average pooling, ATen's
kernel for max pooling and for an average pool's backward whose windows overlap as much.
Max pooling's indices cost nothing unless used; when they are (training), the values are
gathered at them rather than found by a second scan."""
from __future__ import annotations

import itertools

import sympy
import torch

from .. import ir, symbolic
from ..symbolic import FloorDiv, ModularIndexing
from ..virtualized import current_graph, current_origin, ops
from .common import meta_val, new_pointwise, output_read, size_of
from .registry import register_lowering

aten = torch.ops.aten
UNROLLED_WINDOW = 25   # window elements unrolled into one expression; a larger window is a loop


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


def _args(kernel_size, stride, padding, spatial, dilation=1):
    """Per-dim kernel, stride (default: the kernel), padding and dilation; ATen accepts one
    value for all."""
    def expand(v, default):
        v = [v] if isinstance(v, int) else (list(v) if v else list(default))
        return v * spatial if len(v) == 1 else v
    kernel = expand(kernel_size, kernel_size)
    return kernel, expand(stride, kernel), expand(padding, [0]), expand(dilation, [1])


def _avg_pool(spatial, x, kernel_size, stride, padding, count_include_pad, divisor_override):
    kernel, stride, padding, _ = _args(kernel_size, stride, padding, spatial)
    out_size, dtype = size_of(meta_val()), x.get_dtype()
    windows = _Windows(x.get_size(), out_size, kernel, stride, padding, count_include_pad, divisor_override)
    load, lead = x.make_loader(), len(out_size) - spatial
    acc = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    if symbolic.product(kernel) > UNROLLED_WINDOW:
        return _avg_pool_loop(x, out_size, windows, acc, dtype)

    def inner(index):
        out_index = index[lead:]
        total = None
        for offsets in itertools.product(*[range(k) for k in kernel]):
            source = [o * s - p + j for o, s, p, j in zip(out_index, stride, padding, offsets)]
            value = ops.masked(inside(source, windows.inputs), lambda source=source: ops.to_dtype(load(list(index[:lead]) + source), acc), 0, acc)
            total = value if total is None else ops.add(total, value)
        return ops.to_dtype(ops.truediv(total, windows.divisor(out_index, acc)), dtype)
    return new_pointwise(inner, out_size, dtype, 2)


def _avg_pool_loop(x, out_size, windows: _Windows, acc, dtype):
    """Average pooling as a sum over the window (a reduction), then the division.  Without
    padding a window holds at most min(kernel, input) elements from its start: the loop runs
    that far (ceil_mode's ``AvgPool2d(640)`` over a 3x3 map sums 9 elements, not 640 * 640)."""
    load, lead = x.make_loader(), len(out_size) - len(windows.kernel)
    reach = [sympy.Min(k, n) if p == 0 else sympy.Integer(k)
             for k, n, p in zip(windows.kernel, windows.inputs, windows.padding)]

    def inner(index, rindex):
        source = [o * s - p + r for o, s, p, r in zip(index[lead:], windows.stride, windows.padding, rindex)]
        return ops.masked(inside(source, windows.inputs),
                          lambda: ops.to_dtype(load(list(index[:lead]) + source), acc), 0, acc)
    total = current_graph().add_computed(ir.Reduction(acc, tuple(out_size), tuple(reach), "sum", inner, x.get_dtype(),
                                                      current_origin())).make_loader()
    return new_pointwise(lambda index: ops.to_dtype(ops.truediv(total(index), windows.divisor(index[lead:], acc)), dtype),
                         out_size, dtype, 2)


def _avg_pool_backward(spatial, grad, x, kernel_size, stride, padding, count_include_pad, divisor_override):
    """Each input element gathers grad / divisor from the (at most ceil(k / s) per dim)
    windows that cover it."""
    kernel, stride, padding, _ = _args(kernel_size, stride, padding, spatial)
    covering = [-(-k // s) for k, s in zip(kernel, stride)]
    if symbolic.product(covering) > UNROLLED_WINDOW:
        raise NotImplementedError(f"{'x'.join(map(str, covering))} windows cover each element, past the "
                                  f"{UNROLLED_WINDOW} unrolled into one expression")
    size, dtype = x.get_size(), grad.get_dtype()
    windows = _Windows(size, grad.get_size(), kernel, stride, padding, count_include_pad, divisor_override)
    load, lead = grad.make_loader(), len(size) - spatial
    acc = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype

    def inner(index):
        in_index = index[lead:]
        total = None
        for back in itertools.product(*[range(c) for c in covering]):
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


def inside(source, sizes):
    """Is every coordinate of ``source`` within ``sizes`` (an ``ops`` bool)?"""
    result = None
    for i, size in zip(source, sizes):
        cond = ops.logical_and(ops.ge(_idx(i), _idx(sympy.Integer(0))), ops.lt(_idx(i), _idx(size)))
        result = cond if result is None else ops.logical_and(result, cond)
    return result


def _first_inside(start, dilation):
    """The first window position at or after ``start`` that is not padding."""
    skip = ops.floordiv(ops.add(_idx(-start), _idx(sympy.Integer(dilation - 1))), _idx(sympy.Integer(dilation)))
    return ops.add(_idx(start), ops.mul(ops.maximum(skip, _idx(sympy.Integer(0))), _idx(sympy.Integer(dilation))))


def _max_pool(spatial, x, kernel_size, stride, padding, dilation):
    """ATen's CPU rules: the max over the window's non-padding elements, NaN if any is NaN;
    the index (flat within the input plane) of the first maximum or the last NaN, and of the
    window's first element if all are -inf."""
    kernel, stride, padding, dilation = _args(kernel_size, stride, padding, spatial, dilation)
    if symbolic.product(kernel) > UNROLLED_WINDOW:
        raise NotImplementedError(f"a {'x'.join(map(str, kernel))} window is past the {UNROLLED_WINDOW} elements "
                                  "unrolled into one expression")
    out_size, dtype = size_of(meta_val()[0]), x.get_dtype()
    sizes, lead = x.get_size()[-spatial:], len(out_size) - spatial
    acc = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    extents = [(o - 1) * s + (k - 1) * d + 1 for o, s, k, d in zip(out_size[lead:], stride, kernel, dilation)]
    if ir.op_count(x):
        x = current_graph().realize(x, _input_layout(x.get_size(), dtype))   # read by several overlapping windows
    if any(p != 0 for p in padding) or not all(sympy.simplify(e <= n) == sympy.true for e, n in zip(extents, sizes)):
        x = _padded(x, lead, padding, extents, acc)   # windows read it without bounds checks
    load = x.make_loader()

    def window(index):
        """(inside, value, flat input position) of each window element, in ATen's order."""
        for offsets in itertools.product(*[range(k) for k in kernel]):
            at = [o * s + j * d for o, s, j, d in zip(index[lead:], stride, offsets, dilation)]
            source = [a - p for a, p in zip(at, padding)]
            value = ops.to_dtype(load(list(index[:lead]) + at), acc)
            yield inside(source, sizes), value, _flat(source, sizes)

    def values(index):
        best = None
        for _, value, _ in window(index):
            best = value if best is None else ops.maximum(best, value)
        return ops.to_dtype(best, dtype)

    def indices(index):
        starts = [_first_inside(o * s - p, d) for o, s, p, d in zip(index[lead:], stride, padding, dilation)]
        at = starts[0]
        for start, size in zip(starts[1:], sizes[1:]):
            at = ops.add(ops.mul(at, _idx(size)), start)
        best = ops.constant(float("-inf"), acc)
        for inside, value, position in window(index):
            take = ops.logical_and(inside, ops.logical_or(ops.gt(value, best), ops.isnan(value)))
            best, at = ops.where(take, value, best), ops.where(take, _idx(position), at)
        return at
    index_value = new_pointwise(indices, out_size, torch.int64, 2)
    if not output_read(1):
        return new_pointwise(values, out_size, dtype, 2), index_value
    # training: the indices are saved for the backward; the values are the input at them
    positions = current_graph().realize(index_value).make_loader()

    def gathered(index):
        flat = ops.indirect_indexing(positions(index), symbolic.product(sizes))
        return ops.to_dtype(load(list(index[:lead]) + [c + p for c, p in zip(unflat(flat, sizes), padding)]), dtype)
    return new_pointwise(gathered, out_size, dtype, 2), index_value


def _padded(x, lead, padding, extents, dtype):
    """``x`` realized inside a frame of -inf (``padding`` before, up to ``extents`` windows
    reach): window loads need no masks, which kept g++ from vectorizing max pooling (masked
    strided loads); the frame is written in one vectorized pass.  ``x`` is a buffer: a computed
    value's loads inside the frame's mask (a batch norm's per-channel parameters) kept g++ from
    vectorizing the frame (loop-invariant masked loads)."""
    sizes, load = x.get_size()[lead:], x.make_loader()

    def inner(index):
        source = [i - p for i, p in zip(index[lead:], padding)]
        return ops.masked(inside(source, sizes), lambda: ops.to_dtype(load(list(index[:lead]) + source), dtype),
                          float("-inf"), dtype)
    frame = [sympy.Max(e, n + p) for e, n, p in zip(extents, sizes, padding)]
    size = list(x.get_size()[:lead]) + frame
    return current_graph().realize(new_pointwise(inner, size, dtype, 2), _input_layout(size, dtype))


def _input_layout(size, dtype):
    """Channels-last where the pooled input is (``host_library.plan_layout`` chose it: its
    channels are the vector lanes), else None (contiguous)."""
    if len(size) == 4 and ir.is_channels_last(current_graph().current_node.args[0].meta.get("val")):
        return ir.Layout.channels_last(size, dtype)
    return None


def unflat(flat, sizes) -> list:
    """The coordinates of flat position ``flat`` within a row-major plane of ``sizes``."""
    coords, inner = [], sympy.Integer(1)
    for k in reversed(range(len(sizes))):
        coords.append(FloorDiv(flat, inner) if k == 0 else ModularIndexing(flat, inner, sizes[k]))
        inner = inner * sizes[k]
    return coords[::-1]


def _flat(source, sizes):
    flat = source[0]
    for i, size in zip(source[1:], sizes[1:]):
        flat = flat * size + i
    return flat


@register_lowering(aten.max_pool2d_with_indices)
def max_pool2d_with_indices(x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    return _max_pool(2, x, kernel_size, stride, padding, dilation)


@register_lowering(aten.max_pool3d_with_indices)
def max_pool3d_with_indices(x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    return _max_pool(3, x, kernel_size, stride, padding, dilation)


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
