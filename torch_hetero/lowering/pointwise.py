"""Elementwise lowerings: each builds a Pointwise whose inner function calls ``ops``."""
from __future__ import annotations

import math

import torch

from ..ops_protocol import TRANSCENDENTAL
from ..virtualized import ops
from .common import TRANSCENDENTAL_OPS, is_tensor, make_pointwise, meta_val, promote
from .registry import register_lowering

aten = torch.ops.aten

# ---------------------------------------------------------------- unary, computed in the output dtype
_UNARY = {
    aten.neg: "neg", aten.abs: "abs", aten.exp: "exp", aten.exp2: "exp2", aten.expm1: "expm1",
    aten.log: "log", aten.log2: "log2", aten.log10: "log10", aten.log1p: "log1p",
    aten.sqrt: "sqrt", aten.rsqrt: "rsqrt", aten.sin: "sin", aten.cos: "cos", aten.tan: "tan",
    aten.asin: "asin", aten.acos: "acos", aten.atan: "atan", aten.sinh: "sinh",
    aten.cosh: "cosh", aten.tanh: "tanh", aten.asinh: "asinh", aten.acosh: "acosh",
    aten.atanh: "atanh", aten.sigmoid: "sigmoid", aten.erf: "erf", aten.erfc: "erfc",
    aten.floor: "floor", aten.ceil: "ceil", aten.trunc: "trunc", aten.sign: "sign",
    aten.reciprocal: "reciprocal", aten.bitwise_not: "bitwise_not", aten.lgamma: "lgamma",
}


def _unary(name):
    def lower(x):
        dtype = meta_val().dtype
        # a transcendental counts as TRANSCENDENTAL_OPS simple ops when deciding to inline or realize
        return make_pointwise(getattr(ops, name), [x], dtype,
                              own_ops=TRANSCENDENTAL_OPS if name in TRANSCENDENTAL else 1)
    return lower


for _op, _name in _UNARY.items():
    register_lowering(_op)(_unary(_name))


@register_lowering(aten.round.default)
def round_(x):
    return make_pointwise(ops.round, [x], meta_val().dtype)


@register_lowering(aten.logical_not)
def logical_not(x):
    return make_pointwise(ops.logical_not, [x], torch.bool)


@register_lowering(aten.isnan)
def isnan(x):
    return make_pointwise(ops.isnan, [x], x.get_dtype(), torch.bool)


@register_lowering(aten.isinf)
def isinf(x):
    return make_pointwise(ops.isinf, [x], x.get_dtype(), torch.bool)


@register_lowering(aten.relu)
def relu(x):
    return make_pointwise(lambda v: ops.where(ops.le(v, ops.constant(0, x.get_dtype())),
                                              ops.constant(0, x.get_dtype()), v), [x], x.get_dtype())


@register_lowering(aten.gelu)
def gelu(x, approximate="none"):
    dtype = meta_val().dtype

    def fn(v):
        c = lambda value: ops.constant(value, dtype)  # noqa: E731
        if approximate == "tanh":
            inner = ops.mul(c(math.sqrt(2 / math.pi)), ops.add(v, ops.mul(c(0.044715), ops.mul(v, ops.mul(v, v)))))
            return ops.mul(ops.mul(c(0.5), v), ops.add(c(1.0), ops.tanh(inner)))
        return ops.gelu(v)
    return make_pointwise(fn, [x], dtype, own_ops=(8 if approximate == "tanh" else 4) + TRANSCENDENTAL_OPS)


@register_lowering(aten.gelu_backward)
def gelu_backward(grad, x, approximate="none"):
    """grad times GELU's derivative: ``ops.gelu_grad`` (one Gaussian for the CDF and the
    density, see cpp_prelude.h), or for the tanh form torch's decomposition's formula."""
    dtype = meta_val().dtype

    def fn(g, v):
        if approximate != "tanh":
            return ops.mul(g, ops.gelu_grad(v))
        c = lambda value: ops.constant(value, dtype)  # noqa: E731
        beta, kappa = math.sqrt(2 / math.pi), 0.044715
        square = ops.mul(v, v)
        tanh = ops.tanh(ops.mul(c(beta), ops.add(v, ops.mul(c(kappa), ops.mul(square, v)))))
        left_derivative = ops.mul(c(0.5), ops.add(c(1.0), tanh))
        tanh_derivative = ops.sub(c(1.0), ops.mul(tanh, tanh))
        inner_derivative = ops.mul(c(beta), ops.add(c(1.0), ops.mul(c(3 * kappa), square)))
        right_derivative = ops.mul(ops.mul(ops.mul(c(0.5), v), tanh_derivative), inner_derivative)
        return ops.mul(g, ops.add(left_derivative, right_derivative))
    # the derivative costs two transcendentals' worth (a CDF and a density): shared, it is computed once
    return make_pointwise(fn, [grad, x], dtype, own_ops=(14 + TRANSCENDENTAL_OPS) if approximate == "tanh"
                          else 2 + 2 * TRANSCENDENTAL_OPS)


@register_lowering(aten.leaky_relu)
def leaky_relu(x, negative_slope=0.01):
    dtype = meta_val().dtype
    return make_pointwise(lambda v: ops.where(ops.gt(v, ops.constant(0, dtype)), v,
                                              ops.mul(v, ops.constant(negative_slope, dtype))), [x], dtype)


@register_lowering(aten.elu)
def elu(x, alpha=1.0, scale=1.0, input_scale=1.0):
    dtype = meta_val().dtype

    def fn(v):
        c = lambda value: ops.constant(value, dtype)  # noqa: E731
        neg = ops.mul(c(alpha), ops.expm1(ops.mul(v, c(input_scale))))
        return ops.mul(c(scale), ops.where(ops.gt(v, c(0)), v, neg))
    return make_pointwise(fn, [x], dtype)


@register_lowering(aten.hardtanh)
def hardtanh(x, min_val=-1.0, max_val=1.0):
    return _clamped(x, min_val, max_val)


@register_lowering(aten.threshold_backward)
def threshold_backward(grad, x, threshold):
    dtype = meta_val().dtype
    return make_pointwise(lambda g, v: ops.where(ops.le(v, ops.constant(threshold, dtype)),
                                                 ops.constant(0, dtype), g), [grad, x], dtype)


# ---------------------------------------------------------------- binary arithmetic
def _binary(name):
    def lower(a, b):
        return make_pointwise(getattr(ops, name), [a, b], meta_val().dtype)
    return lower


for _op, _name in {aten.mul: "mul", aten.maximum: "maximum", aten.minimum: "minimum",
                   aten.atan2: "atan2", aten.fmod: "fmod", aten.remainder: "mod",
                   aten.bitwise_and: "bitwise_and", aten.bitwise_or: "bitwise_or",
                   aten.bitwise_xor: "bitwise_xor", aten.bitwise_left_shift: "lshift",
                   aten.bitwise_right_shift: "rshift", aten.__lshift__: "lshift", aten.__rshift__: "rshift",
                   aten.copysign: "copysign",
                   aten.hypot: "hypot", aten.nextafter: "nextafter"}.items():
    register_lowering(_op)(_binary(_name))


# ATen's CPU kernel computes these floating powers as products and roots (PowKernel.cpp), not
# with pow(): the same roundings as eager, and vector code instead of a scalar libm call
_POWERS = {2.0: lambda x: ops.mul(x, x), 3.0: lambda x: ops.mul(ops.mul(x, x), x),
           -2.0: lambda x: ops.reciprocal(ops.mul(x, x)), 0.5: lambda x: ops.sqrt(x),
           -0.5: lambda x: ops.rsqrt(x), -1.0: lambda x: ops.reciprocal(x)}


@register_lowering(aten.pow)
def pow_(a, b):
    dtype = meta_val().dtype
    if dtype.is_floating_point and is_tensor(a) and isinstance(b, (int, float)) and not isinstance(b, bool) \
            and float(b) in _POWERS:
        return make_pointwise(_POWERS[float(b)], [a], dtype)
    return make_pointwise(ops.pow, [a, b], dtype)


def _with_alpha(name):
    def lower(a, b, alpha=1):
        dtype = meta_val().dtype
        if alpha != 1:
            return make_pointwise(lambda x, y: getattr(ops, name)(x, ops.mul(y, ops.constant(alpha, dtype))),
                                  [a, b], dtype)
        return make_pointwise(getattr(ops, name), [a, b], dtype)
    return lower


register_lowering(aten.add)(_with_alpha("add"))
register_lowering(aten.sub)(_with_alpha("sub"))


@register_lowering(aten.rsub)
def rsub(a, b, alpha=1):
    return _with_alpha("sub")(b, a, alpha)


@register_lowering(aten.div)
def div(a, b, rounding_mode=None):
    dtype = meta_val().dtype
    if rounding_mode is None:
        return make_pointwise(ops.truediv, [a, b], dtype)
    return make_pointwise(ops.floordiv if rounding_mode == "floor" else ops.truncdiv, [a, b], dtype)


@register_lowering(aten.floor_divide)
def floor_divide(a, b):
    return make_pointwise(ops.floordiv, [a, b], meta_val().dtype)


def _logical(name):
    def lower(a, b):
        return make_pointwise(getattr(ops, name), [a, b], torch.bool)
    return lower


for _op, _name in {aten.logical_and: "logical_and", aten.logical_or: "logical_or",
                   aten.logical_xor: "logical_xor"}.items():
    register_lowering(_op)(_logical(_name))


def _comparison(name):
    def lower(a, b):
        return make_pointwise(getattr(ops, name), [a, b], promote(a, b), torch.bool)
    return lower


for _op, _name in {aten.eq: "eq", aten.ne: "ne", aten.lt: "lt", aten.le: "le",
                   aten.gt: "gt", aten.ge: "ge"}.items():
    register_lowering(_op)(_comparison(_name))


@register_lowering(aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar)
def where(cond, a, b):
    if is_tensor(cond) and cond.get_dtype() != torch.bool:
        raise NotImplementedError("where with a non-bool condition")
    cond = cond if is_tensor(cond) else bool(cond)
    return make_pointwise(ops.where, [cond, a, b], meta_val().dtype, uncast=(0,))


def _clamped(x, low, high):
    inputs, steps = [x], []
    if low is not None:
        inputs.append(low)
        steps.append(ops.maximum)
    if high is not None:
        inputs.append(high)
        steps.append(ops.minimum)

    def fn(v, *bounds):
        for step, bound in zip(steps, bounds):
            v = step(v, bound)
        return v
    return make_pointwise(fn, inputs, meta_val().dtype)


@register_lowering(aten.clamp)
def clamp(x, min=None, max=None):
    return _clamped(x, min, max)


@register_lowering(aten.clamp_min)
def clamp_min(x, min):
    return _clamped(x, min, None)


@register_lowering(aten.clamp_max)
def clamp_max(x, max):
    return _clamped(x, None, max)


# ---------------------------------------------------------------- casts and copies
@register_lowering(aten._to_copy, aten.clone, aten.lift_fresh_copy,
                   torch.ops.prims.convert_element_type)
def to_copy(x, dtype=None, **_layout_kwargs):
    """A fresh value (never the input itself: a returned copy must not alias it)."""
    return make_pointwise(lambda v: v, [x], meta_val().dtype)  # inputs are cast to the compute dtype


# ---------------------------------------------------------------- composed from the ops above
@register_lowering(aten.round.decimals)
def round_decimals(x, decimals=0):
    """As ATen: scale by 10**|decimals| in the value's dtype, round half to even, unscale."""
    dtype = meta_val().dtype
    scale = float(10 ** abs(decimals))

    def fn(v):
        c = ops.constant(scale, dtype)
        if decimals < 0:
            return ops.mul(ops.round(ops.truediv(v, c)), c)
        return ops.truediv(ops.round(ops.mul(v, c)), c)
    return make_pointwise(fn, [x], dtype)


def _nan_ignoring(name):
    """fmax/fmin: like maximum/minimum, but a NaN loses to a number."""
    def lower(a, b):
        dtype = meta_val().dtype
        if not dtype.is_floating_point:
            return make_pointwise(getattr(ops, name), [a, b], dtype)
        return make_pointwise(lambda x, y: ops.where(ops.isnan(x), y, ops.where(ops.isnan(y), x, getattr(ops, name)(x, y))),
                              [a, b], dtype)
    return lower


register_lowering(aten.fmax)(_nan_ignoring("maximum"))
register_lowering(aten.fmin)(_nan_ignoring("minimum"))


@register_lowering(aten.signbit)
def signbit(x):
    """Set for negative numbers and for -0.0 (and NaNs with the sign bit), as copysign sees it."""
    dtype = x.get_dtype()
    if dtype == torch.bool:
        return make_pointwise(lambda v: ops.constant(False, torch.bool), [x], torch.bool)
    if not dtype.is_floating_point:
        return make_pointwise(lambda v: ops.lt(v, ops.constant(0, dtype)), [x], dtype, torch.bool)
    return make_pointwise(lambda v: ops.lt(ops.copysign(ops.constant(1.0, dtype), v), ops.constant(0.0, dtype)),
                          [x], dtype, torch.bool)


@register_lowering(aten.ldexp.Tensor)
def ldexp(x, exponent):
    """x * 2**exponent, as ATen composes it."""
    dtype = meta_val().dtype
    return make_pointwise(lambda v, e: ops.mul(v, ops.exp2(e)), [x, exponent], dtype)


@register_lowering(aten.angle.default)
def angle(x):
    """Real inputs: pi for negatives, 0 otherwise, NaN stays NaN."""
    dtype = meta_val().dtype
    if x.get_dtype().is_complex:
        raise NotImplementedError("angle of a complex tensor")

    def fn(v):
        zero = ops.constant(0.0, dtype)
        return ops.where(ops.isnan(v), v, ops.where(ops.lt(v, zero), ops.constant(math.pi, dtype), zero))
    return make_pointwise(fn, [x], dtype)
