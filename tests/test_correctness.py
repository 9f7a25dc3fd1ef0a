"""Compiled-vs-eager correctness of the hetero backend over a table of small functions.

Every case runs statically and with dynamic=True; cases with floating-point
inputs (and grad=True) also check the backward pass.  Shapes are small and odd,
with every dynamic dim >= 2 (dynamo specializes sizes 0 and 1).
"""

import math
from typing import Callable, NamedTuple

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils import check

S = (3, 5, 7)
LOW = 1e-2  # tolerance for float16 / bfloat16 cases
MM = 1e-4  # tolerance for matmul-heavy cases (different accumulation order)


class Case(NamedTuple):
    id: str
    fn: Callable
    inputs: Callable[[], tuple]  # called after torch.manual_seed(0)
    grad: bool = True  # test backward (only if some input is floating point)
    tol: float = 1e-5


# ---------------------------------------------------------------- input helpers

def randn(*shape, dtype=torch.float32):
    return torch.randn(shape).to(dtype)


def pos(*shape, dtype=torch.float32):
    """Uniform in [0.5, 1.5): safe for log/sqrt/pow/prod/division."""
    return (torch.rand(shape) + 0.5).to(dtype)


def ints(*shape, lo=-10, hi=10, dtype=torch.int64):
    return torch.randint(lo, hi, shape, dtype=dtype)


def nonzero_ints(*shape, dtype=torch.int64):
    """Values in [-5, -1] u [1, 5]: safe divisors with both signs."""
    sign = torch.randint(0, 2, shape) * 2 - 1
    return (torch.randint(1, 6, shape) * sign).to(dtype)


def bools(*shape, p=0.5):
    return torch.rand(shape) < p


def with_nans(*shape):
    x = torch.randn(shape)
    x.view(-1)[::4] = float("nan")
    return x


def module(factory):
    """Build an nn.Module with a fixed seed, in eval mode (dropout is identity)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return factory().eval()


def attention_block(x, wq, wk, wv, wo):
    """Single-head causal self-attention written out."""
    q, k, v = x @ wq, x @ wk, x @ wv
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    t = x.shape[-2]
    causal = torch.ones(t, t, dtype=torch.bool).triu(1)
    probs = scores.masked_fill(causal, float("-inf")).softmax(-1)
    return (probs @ v) @ wo


def inplace_on_clone(x):
    y = x.clone()
    y.mul_(2).add_(1)
    y[:, 1:3] = 0.5
    return y


def f3():
    return (randn(*S),)


def f3x2():
    return (randn(*S), randn(*S))


# ---------------------------------------------------------------- the cases

POINTWISE = [
    Case("add_sub_mul_div", lambda x, y: (x + y) * x - y / (x.abs() + 1), f3x2),
    Case("div_tensor", lambda x, y: x / y - y / 3, lambda: (randn(*S), pos(*S))),
    Case("pow_int_exponent", lambda x: x.pow(2) + x**3 - x.pow(0), f3),
    Case("pow_fractional", lambda p: p.pow(1.5) + p**-0.5, lambda: (pos(*S),)),
    Case("pow_tensor", lambda p, y: p**y, lambda: (pos(*S), randn(*S))),
    Case("pow_scalar_base", lambda x: 2.0**x, f3),
    Case("exp_log", lambda x, p: x.exp() + p.log(), lambda: (randn(*S), pos(*S))),
    Case("log1p_expm1", lambda x, p: p.log1p() * x.expm1(), lambda: (randn(*S), pos(*S))),
    Case("sqrt_rsqrt", lambda p: p.sqrt() - p.rsqrt(), lambda: (pos(*S),)),
    Case("sin_cos_tan", lambda x: x.sin() + x.cos() * (x * 0.5).tan(), f3),
    Case("tanh_sigmoid", lambda x: x.tanh() * torch.sigmoid(x), f3),
    Case("erf", lambda x: torch.erf(x * 2) + 1, f3),
    Case("abs_neg_sign", lambda x: x.abs() - (-x) * x.sign(), f3),
    Case("floor_ceil_round_trunc",
         lambda x: (x * 3).floor() + (x * 3).ceil() * 2 + (x * 3).round() * 3 + (x * 3).trunc() * 4, f3),
    Case("round_half_even", lambda x: x.round(),
         lambda: (torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49]),)),
    Case("clamp_scalar", lambda x: x.clamp(-0.5, 0.5) + x.clamp(min=0.1) + x.clamp(max=-0.2), f3),
    Case("clamp_tensor", lambda x, p: torch.clamp(x, min=-p, max=p), lambda: (randn(*S), pos(*S))),
    Case("where", lambda x, y: torch.where(x > 0, x, y * 2), f3x2),
    Case("where_scalar", lambda x, y: torch.where(x > y, x, 0.0), f3x2),
    Case("comparisons",
         lambda x, y: (x < y, x <= y, x > 0.5, x >= y, x == x.round(), x != y), f3x2, grad=False),
    Case("maximum_minimum", lambda x, y: torch.maximum(x, y) - 2 * torch.minimum(x, y), f3x2),
    Case("nan_propagation",
         lambda x, y: (torch.maximum(x, y), torch.minimum(y, x), x.amax(-1), x + y, x > y),
         lambda: (with_nans(*S), randn(*S)), grad=False),
    Case("reciprocal", lambda p: p.reciprocal() + (-p).reciprocal() * 3, lambda: (pos(*S),)),
    Case("fmod_remainder_float",
         lambda x, p: torch.fmod(x * 3, 1.5) + torch.remainder(x * 3, p) + torch.remainder(x, -0.7),
         lambda: (randn(*S), pos(*S))),
    Case("lerp_addcmul", lambda x, y, z: torch.lerp(x, y, 0.3) + torch.addcmul(x, y, z, value=0.5),
         lambda: (randn(*S), randn(*S), randn(*S))),
    Case("atan2", lambda x, y: torch.atan2(x, y), f3x2),
    Case("long_chain", lambda x, y: ((x.sin() * y).exp() + 1).log().tanh() * y.sigmoid() - x, f3x2),
    # activations (inputs scaled to cover the interesting ranges)
    Case("relu", lambda x: F.relu(x * 3), f3),
    Case("gelu_erf", lambda x: F.gelu(x * 3), f3),
    Case("gelu_tanh", lambda x: F.gelu(x * 3, approximate="tanh"), f3),
    Case("silu", lambda x: F.silu(x * 3), f3),
    Case("leaky_relu", lambda x: F.leaky_relu(x * 3, 0.1), f3),
    Case("elu", lambda x: F.elu(x * 3, alpha=1.3), f3),
    Case("hardtanh", lambda x: F.hardtanh(x * 3, -1.5, 2.0), f3),
    Case("softplus", lambda x: F.softplus(x * 3) + F.softplus(x * 3, beta=2, threshold=5), f3),
    Case("mish", lambda x: F.mish(x * 3), f3),
    Case("hardswish_hardsigmoid", lambda x: F.hardswish(x * 4) + F.hardsigmoid(x * 4), f3),
]

CASTS = [
    Case("cast_f32_f64", lambda x, y: x.double() * y.to(torch.float64) + 1e-10, f3x2),
    Case("cast_f64_f32", lambda x: (x * 1.1).float(), lambda: (randn(*S, dtype=torch.float64),)),
    Case("cast_f32_f16", lambda x: x.half() * 2 + 1, f3, tol=LOW),
    Case("cast_f32_bf16", lambda x: x.bfloat16() * 2 + 1, f3, tol=LOW),
    Case("cast_f16_f32", lambda h: h.float().exp(), lambda: (randn(*S, dtype=torch.float16),), tol=LOW),
    Case("cast_bf16_f32", lambda b: b.float().exp(), lambda: (randn(*S, dtype=torch.bfloat16),), tol=LOW),
    Case("cast_f16_bf16", lambda h: h.to(torch.bfloat16) + 1, lambda: (randn(*S, dtype=torch.float16),),
         tol=LOW),
    Case("cast_float_int", lambda x: ((x * 10).to(torch.int32), (x * 10).long()), f3, grad=False),
    Case("cast_float_bool", lambda x: x.round().bool(), f3, grad=False),
    Case("cast_int_float", lambda a: (a.float() / 3, a.to(torch.float64) * 0.1), lambda: (ints(*S),)),
    Case("cast_bool_numeric", lambda b: (b.float() + 0.5, b.long() * 2, b.to(torch.int32) - 1),
         lambda: (bools(*S),)),
    Case("cast_int32_int64", lambda a, b: (a.long() * 3 + b, a + b, b.to(torch.int32) * a),
         lambda: (ints(*S, dtype=torch.int32), ints(*S))),
    Case("float16_pointwise", lambda h, g: (h * g + h.exp()).sigmoid() - g.tanh(),
         lambda: (randn(*S, dtype=torch.float16), randn(*S, dtype=torch.float16)), tol=LOW),
    Case("bfloat16_pointwise", lambda h, g: (h * g + h.exp()).sigmoid() - g.tanh(),
         lambda: (randn(*S, dtype=torch.bfloat16), randn(*S, dtype=torch.bfloat16)), tol=LOW),
    Case("float16_reduce", lambda h: (h.sum(-1), h.softmax(-1), h.amax(1)),
         lambda: (randn(*S, dtype=torch.float16),), tol=LOW),
    Case("bfloat16_reduce", lambda b: (b.mean(1), b.log_softmax(0), b.amin(-1)),
         lambda: (randn(*S, dtype=torch.bfloat16),), tol=LOW),
    Case("mixed_half_float", lambda h, x: h * x + h, lambda: (randn(*S, dtype=torch.float16), randn(*S)),
         tol=LOW),
]

INT_BOOL = [
    Case("int64_arith", lambda a, b: a + b * 3 - a * b, lambda: (ints(*S), ints(*S))),
    Case("int32_arith", lambda a, b: a * 7 - b + 2,
         lambda: (ints(*S, dtype=torch.int32), ints(*S, dtype=torch.int32))),
    Case("int_true_div", lambda a, b: a / b, lambda: (ints(*S), nonzero_ints(*S))),
    Case("int_div_rounding_modes",
         lambda a, b: (torch.div(a, b, rounding_mode="floor"), torch.div(a, b, rounding_mode="trunc")),
         lambda: (ints(*S), nonzero_ints(*S))),
    Case("int_floor_divide", lambda a, b: (a // b, torch.floor_divide(a, 3), a // -4),
         lambda: (ints(*S), nonzero_ints(*S))),
    Case("int_fmod_remainder", lambda a, b: (torch.fmod(a, b), torch.remainder(a, b), a % 3, a % -3),
         lambda: (ints(*S), nonzero_ints(*S))),
    Case("int_bitwise", lambda a, b: (a & b, a | b, a ^ b, ~a), lambda: (ints(*S), ints(*S))),
    Case("int_shifts", lambda a, s: (a << s, a >> s, (-a) >> s),
         lambda: (ints(*S, lo=0, hi=1000), ints(*S, lo=0, hi=5))),
    Case("bool_bitwise", lambda p, q: (p & q, p | q, p ^ q, ~p), lambda: (bools(*S), bools(*S))),
    Case("logical_ops",
         lambda a, p, x: (torch.logical_and(a, p), torch.logical_or(a > 0, x > 0),
                          torch.logical_xor(p, x), torch.logical_not(a)),
         lambda: (ints(*S, lo=-2, hi=3), bools(*S), randn(*S)), grad=False),
    Case("int_abs_neg_sign_clamp",
         lambda a, b: (a.abs(), -a, a.sign(), a.clamp(-2, 3), torch.maximum(a, b), torch.minimum(a, b)),
         lambda: (ints(*S), ints(*S))),
    Case("int_pow", lambda a: (a.pow(2), a**3), lambda: (ints(*S),)),
    Case("int_pow_tensor_exponent", lambda a, e: (a**e, torch.pow(3, e)), lambda: (ints(*S), ints(*S, lo=-2, hi=30))),
    Case("int_where_compare", lambda a, b: (torch.where(a > b, a, b * 2), a == b, a < 0),
         lambda: (ints(*S), ints(*S, lo=-3, hi=3))),
    Case("uint8_wraparound", lambda u, v: (u + v, u * 3, u - v),
         lambda: (ints(*S, lo=0, hi=256, dtype=torch.uint8), ints(*S, lo=0, hi=256, dtype=torch.uint8))),
    Case("int_reductions",
         lambda a: (a.sum(), a.sum(1), a.prod(-1), a.amax(0), a.argmin(1), a.max(-1)),
         lambda: (ints(*S, lo=-3, hi=4),)),
    Case("int32_sum_promotes", lambda a: (a.sum(-1), a.sum(dtype=torch.int32)),
         lambda: (ints(*S, dtype=torch.int32),)),
    Case("bool_sum", lambda p: (p.sum(), p.sum(0), p.to(torch.int32).sum(-1)), lambda: (bools(*S),)),
]

BROADCAST = [
    Case("bcast_3d_2d", lambda x, y: x + y, lambda: (randn(3, 1, 7), randn(5, 1))),
    Case("bcast_outer", lambda a, b: a * b - b, lambda: (randn(3, 1), randn(1, 5))),
    Case("bcast_0d_tensor", lambda x, s: x * s + s, lambda: (randn(3, 5), randn())),
    Case("bcast_0d_promotion", lambda a, s, x, d: (a + s, x + d),
         lambda: (ints(3, 5), randn(), randn(3, 5), randn(dtype=torch.float64))),
    Case("bcast_size1_dims", lambda x, y, z: x + y * z, lambda: (randn(*S), randn(1), randn(1, 1, 7))),
    Case("python_scalar_args", lambda x, alpha, n: x * alpha + n - x / n,
         lambda: (randn(*S), 2.5, 3)),
    Case("python_scalar_promotion", lambda a: (a * 2.5, a + True, a * 2), lambda: (ints(*S),)),
]


# Reductions: every dim of a 3-D tensor, with/without keepdim, plus all dims.
# name: (fn(x, dim, keepdim), fn(x) over all dims, inputs, differentiable)
REDUCTIONS = {
    "sum": (lambda x, d, k: x.sum(d, keepdim=k), lambda x: x.sum(), f3, True),
    "mean": (lambda x, d, k: x.mean(d, keepdim=k), lambda x: x.mean(), f3, True),
    "prod": (lambda x, d, k: x.prod(d, keepdim=k), lambda x: x.prod(), lambda: (pos(*S),), True),
    "amax": (lambda x, d, k: x.amax(d, keepdim=k), lambda x: x.amax(), f3, True),
    "amin": (lambda x, d, k: x.amin(d, keepdim=k), lambda x: x.amin(), f3, True),
    "argmax": (lambda x, d, k: x.argmax(d, keepdim=k), lambda x: x.argmax(), f3, False),
    "argmin": (lambda x, d, k: x.argmin(d, keepdim=k), lambda x: x.argmin(), f3, False),
    "var": (lambda x, d, k: x.var(d, keepdim=k), lambda x: x.var(), f3, True),
    "std": (lambda x, d, k: x.std(d, keepdim=k, correction=0), lambda x: x.std(), f3, True),
    "var_mean": (lambda x, d, k: torch.var_mean(x, d, keepdim=k), lambda x: torch.var_mean(x), f3, True),
    "any": (lambda b, d, k: b.any(d, keepdim=k), lambda b: b.any(), lambda: (bools(*S, p=0.2),), False),
    "all": (lambda b, d, k: b.all(d, keepdim=k), lambda b: b.all(), lambda: (bools(*S, p=0.8),), False),
    "logsumexp": (lambda x, d, k: torch.logsumexp(x, d, keepdim=k),
                  lambda x: torch.logsumexp(x, (0, 1, 2)), f3, True),
    "max_dim": (lambda x, d, k: x.max(d, keepdim=k), lambda x: x.max(), f3, True),
}


def _reduce(fn, dim, keepdim):
    return lambda x: fn(x, dim, keepdim)


REDUCTION_CASES = [
    Case(f"{name}_dim{dim}" + ("_keepdim" if keepdim else ""), _reduce(fn, dim, keepdim), make, grad)
    for name, (fn, _, make, grad) in REDUCTIONS.items()
    for dim in (0, 1, -1)
    for keepdim in (False, True)
] + [Case(f"{name}_all", fn_all, make, grad) for name, (_, fn_all, make, grad) in REDUCTIONS.items()]

REDUCTION_CASES += [
    Case("sum_multi_dim_keepdim", lambda x: x.sum((0, 2), keepdim=True), f3),
    Case("mean_multi_dim", lambda x: x.mean((0, -1)), f3),
    Case("amax_multi_dim", lambda x: x.amax((1, 2)), f3),
    Case("var_multi_dim_correction", lambda x: x.var((0, 1), correction=2), f3),
    Case("any_multi_dim", lambda b: b.any((0, 2)), lambda: (bools(*S, p=0.1),)),
    Case("any_all_float", lambda x: (x.round().any(-1), x.round().all(0)), f3, grad=False),
    Case("reduce_then_broadcast", lambda x: x - x.mean(-1, keepdim=True) / x.amax(0), f3),
]

VIEWS = [
    Case("view_reshape", lambda x: x.view(-1, x.shape[-1]).t().reshape(x.shape[-1], x.shape[0], -1) * 2, f3),
    Case("permute", lambda x: (x.permute(2, 0, 1) + 1, x.permute(1, 2, 0).contiguous().sin()), f3),
    Case("transpose", lambda x, y: x.transpose(0, 2) * y, lambda: (randn(*S), randn(7, 5, 3))),
    Case("view_of_view", lambda x: x.transpose(0, 1)[1:, ::2].unsqueeze(0).expand(2, -1, -1, -1) + 1, f3),
    Case("expand", lambda x, y: (x.expand(3, 5, 7) * y, x.expand(2, -1, -1, -1).sum(0)),
         lambda: (randn(3, 1, 7), randn(*S))),
    Case("squeeze_unsqueeze", lambda x: (x.squeeze(1).unsqueeze(0).unsqueeze(-1) * 2, x.squeeze() + 1),
         lambda: (randn(3, 1, 7),)),
    Case("slice_steps", lambda x: x[1:, ::2, 1:-1:3] * 2 + x[:-1, 1::3, ::3].sum(), f3),
    Case("select", lambda x: x[:, 2] * x.select(2, -1)[:, 1:2] + x[1, 0], f3),
    Case("narrow", lambda x: x.narrow(1, 1, 3) * 2 + x.narrow(-1, 2, 1).narrow(1, 0, 3), f3),
    Case("flatten", lambda x: (x.flatten(1) * 2, x.flatten() + 1, x.flatten(0, 1).t()), f3),
    Case("chunk", lambda x: tuple(c * (i + 1) for i, c in enumerate(x.chunk(3, dim=-1))), f3),
    Case("split", lambda x: (*(t * 2 for t in x.split([2, 3], dim=1)), *(t + 1 for t in x.split(2, dim=-1))),
         f3),
    Case("unbind", lambda x: sum(t * (i + 1) for i, t in enumerate(x.unbind(0))), f3),
    Case("t", lambda m, n: m.t() * n, lambda: (randn(5, 7), randn(7, 5))),
    Case("contiguous", lambda x: x.transpose(1, 2).contiguous().view(x.shape[0], -1) + 1, f3),
    Case("expand_reshape_copy", lambda x: x[:, None].expand(-1, 2, -1, -1).reshape(-1, x.shape[-1]) * 3, f3),
    Case("diagonal_flip_roll", lambda x: (torch.diagonal(x, dim1=1, dim2=2), x.flip(-1), x.roll(1, 0)), f3),
    Case("return_views", lambda x: (x.transpose(0, 1), x[:, 1:], x.unsqueeze(1), x + 1), f3),
    Case("inplace_on_clone", inplace_on_clone, f3),
]

CAT_PAD_INDEX = [
    Case("cat_dim1", lambda a, b, c: torch.cat([a, b, c], dim=1),
         lambda: (randn(3, 2, 7), randn(*S), randn(3, 4, 7))),
    Case("cat_noncontig", lambda x, y: torch.cat([x, y.transpose(1, 2)], dim=1) * 2,
         lambda: (randn(*S), randn(3, 7, 4))),
    Case("cat_pointwise", lambda x: torch.cat([x.sin(), x.cos() * 2], dim=-1) + 1, f3),
    Case("cat_promotion", lambda x, d: torch.cat([x, d], dim=0),
         lambda: (randn(*S), randn(2, 5, 7, dtype=torch.float64))),
    Case("stack", lambda x, y: (torch.stack([x, y, x * y]), torch.stack([x, y], dim=-1)), f3x2),
    Case("pad_last", lambda x: F.pad(x, (1, 2)), f3),
    Case("pad_2d_value", lambda x: F.pad(x, (2, 0, 1, 1), value=-1.5), f3),
    Case("pad_negative", lambda x: F.pad(x, (-1, 2, 0, -2)), f3),
    Case("pad_3d", lambda x: F.pad(x, (1, 1, 1, 1, 1, 1), value=0.5) * 2, f3),
    Case("gather", lambda x, i: (torch.gather(x, 1, i), torch.gather(x, -1, i[..., :3])),
         lambda: (randn(*S), ints(3, 4, 7, lo=0, hi=5))),
    Case("index_tensor", lambda x, i: x[i] * 2, lambda: (randn(*S), torch.tensor([2, -1, 0, 2]))),
    Case("index_middle_dim", lambda x, i: x[:, i] + 1, lambda: (randn(*S), ints(2, 3, lo=-5, hi=5))),
    Case("index_broadcast", lambda x, i, j: x[i, j], lambda: (randn(*S), ints(4, 1, lo=0, hi=3),
                                                            ints(1, 6, lo=0, hi=5))),
    Case("index_select", lambda x, i: (torch.index_select(x, 1, i), x.index_select(-1, i)),
         lambda: (randn(*S), ints(6, lo=0, hi=5))),
    Case("embedding", lambda i, w: F.embedding(i, w) * 2, lambda: (ints(2, 6, lo=0, hi=11), randn(11, 4))),
    Case("embedding_padding_idx", lambda i, w: F.embedding(i, w, padding_idx=0),
         lambda: (ints(2, 6, lo=0, hi=5), randn(5, 4))),
    Case("masked_fill", lambda x, m, v: (x.masked_fill(m, -1.0), x.masked_fill(~m, v)),
         lambda: (randn(*S), bools(*S), randn())),
]

LAYOUT_AND_EMPTY = [
    # non-contiguous inputs
    Case("noncontig_transposed", lambda x: x * 2 + x.sum(0), lambda: (randn(5, 7).t(),)),
    Case("noncontig_step", lambda x: x.exp() + x.sum(-1, keepdim=True), lambda: (randn(3, 10, 14)[:, ::2, ::2],)),
    Case("noncontig_expanded", lambda x, y: x * y + x, lambda: (randn(3, 1, 7).expand(*S), randn(*S))),
    Case("noncontig_offset", lambda x: x.sin() + 1, lambda: (randn(4, 5, 7)[1:, 2:],)),
    Case("noncontig_permuted_softmax", lambda x: x.softmax(-1), lambda: (randn(7, 3, 5).permute(1, 2, 0),)),
    Case("noncontig_matmul", lambda a, b: a @ b, lambda: (randn(7, 5).t(), randn(4, 7).t()), tol=MM),
    # size-0 dims (dynamo specializes them even with dynamic=True)
    Case("empty_pointwise", lambda x: x.sin() + 1, lambda: (randn(0, 5),)),
    Case("empty_middle_dim", lambda x: (x * 2, x.sum(1), x.prod(1), x.sum()), lambda: (randn(3, 0, 7),)),
    Case("empty_cat", lambda x, e: torch.cat([x, e], dim=1) * 2, lambda: (randn(*S), randn(3, 0, 7))),
]

NN = [
    *[Case(f"softmax_dim{d}", (lambda d: lambda x: x.softmax(d))(d), f3) for d in (0, 1, -1)],
    *[Case(f"log_softmax_dim{d}", (lambda d: lambda x: F.log_softmax(x, d))(d), f3) for d in (0, 1, -1)],
    Case("softmax_large_values", lambda x: ((x * 100).softmax(-1), (x * 100).log_softmax(1)), f3),
    Case("layer_norm_affine", lambda x, w, b: F.layer_norm(x, (7,), w, b, eps=1e-5),
         lambda: (randn(*S), randn(7), randn(7))),
    Case("layer_norm_no_affine", lambda x: F.layer_norm(x, (5, 7)), f3),
    Case("rms_norm_manual", lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w,
         lambda: (randn(*S), randn(7))),
    Case("linear", lambda x, w, b: F.linear(x, w, b), lambda: (randn(*S), randn(4, 7), randn(4)), tol=MM),
    Case("matmul_variants", lambda a, b, c: (a @ b, torch.bmm(a, c), a @ c[0], torch.addmm(c[0, 0], a[0], c[0])),
         lambda: (randn(*S), randn(7, 4), randn(3, 7, 4)), tol=MM),
    Case("mlp", module(lambda: nn.Sequential(nn.Linear(7, 16), nn.GELU(), nn.Linear(16, 7))), f3, tol=MM),
    Case("mlp_tanh_gelu_dropout",
         module(lambda: nn.Sequential(nn.Linear(7, 9), nn.GELU("tanh"), nn.Dropout(0.5), nn.Linear(9, 3))),
         f3, tol=MM),
    Case("dropout_eval", lambda x: F.dropout(x, 0.5, training=False) * 2, f3),
    Case("attention_block", attention_block,
         lambda: (randn(2, 5, 8), *(randn(8, 8) / 3 for _ in range(4))), tol=MM),
    Case("sdpa", lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
         lambda: (randn(2, 3, 5, 4), randn(2, 3, 6, 4), randn(2, 3, 6, 4)), tol=MM),
    Case("sdpa_causal", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
         lambda: (randn(2, 3, 5, 4), randn(2, 3, 5, 4), randn(2, 3, 5, 4)), tol=MM),
    Case("sdpa_float_mask", lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
         lambda: (randn(2, 3, 5, 4), randn(2, 3, 6, 4), randn(2, 3, 6, 4), randn(5, 6)), tol=MM),
    # heads split from a computed tensor (as in LLaMA after rotary): ATen's attention keeps the
    # query's stride order, so its input is realized in eager's layout, not contiguous
    Case("sdpa_heads_of_computed", lambda x: F.scaled_dot_product_attention(
        *((x * s).view(2, 5, 3, 4).transpose(1, 2) for s in (1, 2, 3)), is_causal=True).transpose(1, 2),
         lambda: (randn(2, 5, 12),), tol=MM),
    Case("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
         lambda: (randn(2, 3, 9, 11), randn(4, 3, 3, 3), randn(4)), tol=MM),
    Case("conv2d_depthwise", lambda x, w: F.conv2d(x, w, groups=3, padding=(0, 2)),
         lambda: (randn(2, 3, 9, 11), randn(3, 1, 3, 3)), tol=MM),
]

CREATION = [
    Case("full", lambda x: (torch.full(x.shape, 2.5) + x, torch.full((3, 5), 7) * 2), f3),
    Case("arange", lambda x: (torch.arange(x.shape[-1]) * x,
                              torch.arange(1, 2 * x.shape[-1] + 1, 2, dtype=torch.float32) + x,
                              torch.arange(0.5, 3.0, 0.25)), f3),
    Case("zeros_ones", lambda x: (torch.zeros(x.shape) + x, torch.ones(x.shape[0], 2, dtype=torch.int32),
                                  torch.zeros(4, dtype=torch.bool)), f3),
    Case("like_factories", lambda x: torch.zeros_like(x) + torch.ones_like(x) * 2 + torch.full_like(x, 3.0) * x,
         lambda: (randn(5, 7).t(),)),
    Case("eye_triu_tril", lambda x: (torch.eye(x.shape[-1]) + x, x.triu(), x.tril(-1)), lambda: (randn(7, 7),)),
]

CASES = POINTWISE + CASTS + INT_BOOL + BROADCAST + REDUCTION_CASES + VIEWS + CAT_PAD_INDEX + \
    LAYOUT_AND_EMPTY + NN + CREATION

assert len({c.id for c in CASES}) == len(CASES), "duplicate case ids"


def make_inputs(case):
    torch.manual_seed(0)
    return case.inputs()


def has_float_input(case):
    return any(isinstance(a, torch.Tensor) and a.is_floating_point() for a in make_inputs(case))


GRAD_CASES = [c for c in CASES if c.grad and has_float_input(c)]

dynamic_modes = pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])


@dynamic_modes
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward(case, dynamic):
    check(case.fn, *make_inputs(case), dynamic=dynamic, atol=case.tol, rtol=case.tol)


@dynamic_modes
@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.id)
def test_backward(case, dynamic):
    check(case.fn, *make_inputs(case), dynamic=dynamic, grad=True, atol=case.tol, rtol=case.tol)
