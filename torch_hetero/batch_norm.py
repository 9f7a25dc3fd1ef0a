"""Training batch norm with its statistics accumulated in float64, as ATen's CPU kernel
accumulates a float32 input's (``acc_type<float>`` is double there): the host's decomposition.

torch's decomposition computes the batch's mean and variance in float32.  One training step of
a deep random-weight CNN is sensitive to them: mnasnet_050's gradients differ from eager
float64 by 7.3e-3 (relative to the largest) with float32 statistics (Inductor's too) and by
1.1e-4 with these, as eager float32's (``benchmarks/training_numerics.py``).  The
normalization itself stays in the input's dtype, with the statistics rounded to it, as ATen
does; 16-bit inputs (statistics in float32 there) and inference keep torch's decomposition.
Triton targets match their GPU's eager kernels, which accumulate in float32: not used there."""
from __future__ import annotations

import torch
from torch._decomp import decomposition_table as torch_decompositions

aten = torch.ops.aten


def _statistics(x, eps):
    """(mean, variance, 1/sqrt(variance + eps)) per channel in float64: two passes, as ``var_mean``."""
    variance, mean = aten.var_mean.correction(x.to(torch.float64), [0, *range(2, x.dim())], correction=0)
    return mean, variance, torch.rsqrt(variance + eps)


def _normalize(x, mean, rstd, weight, bias):
    shape = [1, -1] + [1] * (x.dim() - 2)
    out = (x - mean.to(x.dtype).view(shape)) * rstd.to(x.dtype).view(shape)
    if weight is not None:
        out = out * weight.view(shape)
    if bias is not None:
        out = out + bias.view(shape)
    return out


def _updated(running_mean, running_var, mean, variance, momentum, count):
    """The running statistics after this batch (the variance unbiased), in their own dtype."""
    unbiased = variance * (count / max(count - 1, 1))
    return ((running_mean * (1 - momentum) + mean.to(running_mean.dtype) * momentum),
            (running_var * (1 - momentum) + unbiased.to(running_var.dtype) * momentum))


def _applies(x) -> bool:
    return x.dtype == torch.float32 and x.numel() > 0


def _training(x, weight, bias, running_mean, running_var, momentum, eps):
    """(output, mean, rstd, new running mean, new running var): the new running statistics None
    where there are none."""
    mean, variance, rstd = _statistics(x, eps)
    out = _normalize(x, mean, rstd, weight, bias)
    news = (None, None) if running_mean is None else _updated(
        running_mean, running_var, mean, variance, momentum, x.numel() // x.shape[1])
    return out, mean.to(x.dtype), rstd.to(x.dtype), *news


def _legit_functional(x, weight, bias, running_mean, running_var, training, momentum, eps):
    if not (training and _applies(x)):
        return torch_decompositions[aten._native_batch_norm_legit_functional.default](
            x, weight, bias, running_mean, running_var, training, momentum, eps)
    return _training(x, weight, bias, running_mean, running_var, momentum, eps)


def _with_update_functional(x, weight, bias, running_mean, running_var, momentum, eps):
    if not _applies(x):
        return torch_decompositions[aten._batch_norm_with_update_functional.default](
            x, weight, bias, running_mean, running_var, momentum, eps)
    out, mean, rstd, new_mean, new_var = _training(x, weight, bias, running_mean, running_var, momentum, eps)
    return out, mean, rstd, x.new_empty((0,), dtype=torch.uint8), new_mean, new_var


def _no_stats(x, weight, bias, training, momentum, eps):
    if not (training and _applies(x)):
        return torch_decompositions[aten._native_batch_norm_legit.no_stats](x, weight, bias, training, momentum, eps)
    return _training(x, weight, bias, None, None, momentum, eps)[:3]


DECOMPOSITIONS = {aten._native_batch_norm_legit_functional.default: _legit_functional,
                  aten._batch_norm_with_update_functional.default: _with_update_functional,
                  aten._native_batch_norm_legit.no_stats: _no_stats}
