"""Our decomposition table: composite ops AOTAutograd rewrites into ops we lower natively.

Ops with a native lowering (see ``lowering/``) are deliberately absent: decomposing them
would only make longer graphs."""
from __future__ import annotations

import functools

import torch
from torch._decomp import get_decompositions
from torch._prims_common import get_computation_dtype

from . import batch_norm, embedding_bag

aten = torch.ops.aten

DECOMPOSED_OPS = [
    # normalization and softmax: into reductions + pointwise, which we fuse
    aten._softmax, aten._log_softmax, aten._softmax_backward_data, aten._log_softmax_backward_data,
    aten._safe_softmax, aten.native_layer_norm, aten.native_layer_norm_backward,
    aten.native_batch_norm, aten._native_batch_norm_legit_no_training, aten._native_batch_norm_legit,
    aten._native_batch_norm_legit_functional, aten.native_batch_norm_backward,
    aten.native_group_norm, aten.native_group_norm_backward, aten._fused_rms_norm,
    aten._fused_rms_norm_backward, aten.logsumexp.default, aten.std, aten.std_mean, aten.norm,
    aten.linalg_vector_norm,
    # activations and their backwards
    aten.silu, aten.silu_backward, aten.sigmoid_backward, aten.tanh_backward,
    aten.softplus, aten.softplus_backward, aten.mish, aten.hardsigmoid, aten.hardswish,
    aten.hardtanh_backward, aten.hardswish_backward, aten.hardsigmoid_backward, aten.leaky_relu_backward, aten.elu_backward, aten.log_sigmoid_forward,
    aten.glu, aten.celu, aten.logit, aten.hardshrink, aten.softshrink, aten.threshold,
    aten._prelu_kernel, aten.native_dropout_backward,
    # arithmetic helpers
    aten.addcdiv, aten.addcmul, aten.lerp, aten.frac, aten.sgn, aten.nan_to_num, aten.xlogy,
    aten.logaddexp, aten.logaddexp2, aten.deg2rad, aten.rad2deg, aten.heaviside, aten.sinc,
    aten.floor_divide, aten.baddbmm, aten.addmv, aten.mv, aten.dot, aten.vdot, aten.addr,
    aten.masked_fill, aten.where.self_out,
    # losses
    aten.mse_loss, aten.mse_loss_backward, aten.l1_loss, aten.smooth_l1_loss,
    aten.smooth_l1_loss_backward, aten.huber_loss, aten.huber_loss_backward,
    aten.nll_loss_forward, aten.nll_loss_backward, aten.nll_loss2d_forward,
    aten.nll_loss2d_backward, aten.binary_cross_entropy, aten.binary_cross_entropy_backward,
    aten.binary_cross_entropy_with_logits, aten.soft_margin_loss, aten.soft_margin_loss_backward,
    # views and data movement
    aten.slice_backward, aten.select_backward, aten.index_select_backward, aten.diagonal_backward,
    aten.narrow, aten.split.Tensor, aten.split_with_sizes, aten.unbind, aten.stack, aten.hstack,
    aten.vstack, aten.flip, aten.roll, aten.repeat, aten.tile, aten.expand_as, aten.t,
    aten._reshape_alias, aten.squeeze_copy, aten.unsqueeze_copy, aten.permute_copy,
    aten.transpose_copy, aten.expand_copy, aten.alias_copy, aten.t_copy,
    aten.pixel_shuffle, aten.pixel_unshuffle, aten.reflection_pad1d, aten.reflection_pad2d,
    aten.replication_pad1d, aten.replication_pad2d, aten.im2col, aten.col2im,
    aten.embedding_dense_backward,
    # creation
    aten.new_empty, aten.new_full, aten.new_ones, aten.new_zeros, aten.ones, aten.zeros,
    aten.full_like, aten.ones_like, aten.zeros_like, aten.empty_like, aten.fill, aten.eye,
    aten.linspace, aten.logspace, aten.arange.default, aten.arange.start,
    # interpolation, pooling, unpooling and grid sampling: into index arithmetic and reductions
    aten._unsafe_index, aten._unsafe_masked_index, aten._adaptive_avg_pool2d, aten.adaptive_max_pool2d,
    aten.adaptive_max_pool3d, aten.max_pool2d_with_indices_backward, aten.max_unpool2d, aten.max_unpool3d, aten.grid_sampler_2d,
    aten._upsample_bilinear2d_aa, aten._unsafe_masked_index_put_accumulate,
    # views and copies of views (as_strided over our buffers or the inputs)
    aten.diagonal, aten.diagonal_copy, aten.diag_embed, aten.unfold, aten.unfold_copy, aten.trace,
    aten.unsafe_split, aten.unbind_copy, aten.split_with_sizes_copy, aten.narrow_copy, aten.rot90,
    aten.block_diag, aten.channel_shuffle, aten._chunk_cat, aten.as_strided_copy,
    aten.new_empty_strided, aten.zero,
    # more arithmetic and reductions
    aten.mvlgamma, aten.nansum, aten.linalg_cross, aten.isposinf, aten.isneginf, aten.special_xlog1py,
    aten.special_entr, aten.renorm, aten.isin, aten.dist, aten.count_nonzero, aten.bucketize,
    aten.aminmax, aten.take, aten.index_add, aten.index_copy, aten.index_fill,
    aten._batch_norm_with_update_functional, aten._weight_norm_interface,
]


def _addbmm(x, batch1, batch2, *, beta=1, alpha=1):
    """beta * x + alpha * (sum over the batch of batch1 @ batch2), rounded as ATen's CPU kernel
    rounds: one GEMM over batch and inner dims together in float32, one addmm per batch (each
    rounded) in 16-bit types; integer tensors truncate beta and alpha; beta 0 ignores x."""
    if not x.dtype.is_floating_point:
        beta, alpha = int(beta), int(alpha)
    b, n, m = batch1.shape
    if x.dtype in (torch.float16, torch.bfloat16) and b > 0:
        total = x.expand(n, batch2.shape[-1]) if beta != 0 else x.new_zeros(n, batch2.shape[-1])
        for k in range(b):
            total = aten.addmm(total, batch1[k], batch2[k], beta=beta if k == 0 else 1, alpha=alpha)
        return total
    total = aten.mm(batch1.permute(1, 0, 2).reshape(n, b * m), batch2.reshape(b * m, batch2.shape[-1]))
    total = total if alpha == 1 else total * alpha
    if beta == 0:
        return total
    return (x if beta == 1 else x * beta) + total


def _trilinear(i1, i2, i3, expand1, expand2, expand3, sumdim, unroll_dim=1):
    """bilinear's kernel: the three inputs unsqueezed at their ``expand`` dims (in increasing
    order), multiplied, summed over ``sumdim``; fusion keeps the product out of memory."""
    def expand(x, dims):
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # accumulate as a GEMM would
        for d in sorted(dims):
            x = x.unsqueeze(d)
        return x
    product = expand(i1, expand1) * expand(i2, expand2) * expand(i3, expand3)
    return (product.sum(list(sumdim)) if sumdim else product).to(i1.dtype)


def _put(x, index, source, accumulate=False):
    """put: index_put on the flattened tensor (negative indices wrap there too)."""
    flat = aten.index_put(x.reshape(-1), [index.reshape(-1)], source.reshape(-1), accumulate)
    return flat.view(x.shape)


def _as_strided_scatter(x, src, size, stride, storage_offset=None):
    """``src`` written where ``as_strided`` views ``x``: an ``index_put`` into ``x`` flattened at
    the view's element offsets; ``x`` must be dense and start its storage (what the offsets are
    relative to), else ATen runs it.  (Swin's and ConvNeXt's shifted windows, functionalized.)"""
    if not x.is_contiguous() or x.storage_offset() != 0:
        return NotImplemented
    offsets = torch.full((), storage_offset or 0, dtype=torch.int64, device=x.device)
    for extent, step in zip(size, stride):
        offsets = offsets.unsqueeze(-1) + torch.arange(extent, device=x.device) * step
    flat = aten.index_put(x.reshape(-1), [offsets.reshape(-1)], src.reshape(-1))
    return flat.view(x.shape)


def _window_weights(length, windows, dtype, device):
    """[windows, length]: adaptive pooling's weight of each input position in each window
    (1/the window's length where the position lies in it: windows [floor(i L/n), ceil((i+1) L/n)))."""
    i = torch.arange(windows, device=device).unsqueeze(1)
    position = torch.arange(length, device=device)
    start, end = (i * length) // windows, ((i + 1) * length + windows - 1) // windows
    inside = (position >= start) & (position < end)
    return inside.to(dtype) / (end - start).to(dtype)


def _adaptive_avg_pool2d_backward(grad, x):
    """Each window's gradient spread evenly over its positions: separable in height and width,
    grad_in = Hᵀ · grad · W with H, W the window weights (two batched matmuls)."""
    compute = get_computation_dtype(grad.dtype)
    heights = _window_weights(x.shape[-2], grad.shape[-2], compute, grad.device)
    widths = _window_weights(x.shape[-1], grad.shape[-1], compute, grad.device)
    return (heights.t() @ grad.to(compute) @ widths).to(x.dtype)


def _weight_norm_interface_backward(grad_w, v, g, norms, dim):
    """Weight norm's gradients, w = g v / |v| (norms over every dim but ``dim``):
    grad_g = Σ grad_w·v / |v|, grad_v = g/|v| · (grad_w − v · Σ grad_w·v / |v|²)."""
    dim = dim % v.dim()
    others = [d for d in range(v.dim()) if d != dim]
    shape = [-1 if d == dim else 1 for d in range(v.dim())]
    compute = get_computation_dtype(v.dtype)
    grad_w, v32, norms32 = grad_w.to(compute), v.to(compute), norms.to(compute).reshape(shape)
    dot = (grad_w * v32).sum(others, keepdim=True)
    grad_g = (dot / norms32).reshape(g.shape)
    grad_v = g.to(compute).reshape(shape) / norms32 * (grad_w - v32 * (dot / (norms32 * norms32)))
    return grad_v.to(v.dtype), grad_g.to(g.dtype)


# Our own decompositions, for ops torch has none for.
OWN_DECOMPOSITIONS = {aten.addbmm.default: _addbmm, aten._trilinear.default: _trilinear, aten.put.default: _put,
                      aten.as_strided_scatter.default: _as_strided_scatter,
                      aten._adaptive_avg_pool2d_backward.default: _adaptive_avg_pool2d_backward,
                      aten._weight_norm_interface_backward.default: _weight_norm_interface_backward,
                      **embedding_bag.DECOMPOSITIONS}


@functools.lru_cache(maxsize=None)
def decomposition_table(float64_statistics: bool = False) -> dict:
    """The table; ``float64_statistics``: training batch norm's statistics accumulated in float64
    (``batch_norm``), as the host's eager kernel does (``Target.float64_statistics``)."""
    table = {**get_decompositions(DECOMPOSED_OPS), **OWN_DECOMPOSITIONS}
    return {**table, **batch_norm.DECOMPOSITIONS} if float64_statistics else table
