"""EmbeddingBag (``aten._embedding_bag``, sum and mean pooling) decomposed into ops we lower
natively, so that recommendation models run without an ATen fallback on every target:

* forward: each index's row gathered from the table, scaled by its per-sample weight, and
  added into its bag's output row (one fused gather, multiply and scatter-add kernel: serial
  adds on the host, atomic adds on Triton, accumulated in float32 as ATen's CPU kernel does);
  the mean divides by the bag's count of indices that are not ``padding_idx``;
* backward: the table's gradient is the scatter-add of each index's bag gradient (the dense
  backward; ``sparse=True`` returns a sparse tensor, left to ATen), and the per-sample
  weights' gradient is the dot product of the bag's gradient with the index's row.

``offset2bag`` (the bag of each index) is computed from ``offsets``: a 1 at each bag's start
after the first, summed along the indices.  Indices past the last offset (``include_last_offset``)
are treated as ATen's CPU kernel treats them (``_ends_at_last_offset``).  A 2-d input arrives here already flattened, with
``offsets`` every row (``F.embedding_bag``).  Max pooling (its argmax indices),
``scale_grad_by_freq`` and sparse gradients are not decomposed: ATen runs them (forward and
backward, on ATen's own bookkeeping), reported as fallbacks."""
from __future__ import annotations

import torch
from torch._prims_common import get_computation_dtype   # 16-bit rows summed in float32, as ATen's CPU kernel

aten = torch.ops.aten
SUM, MEAN, MAX = 0, 1, 2


def _offset2bag(indices, starts):
    """The bag of each index: how many of ``starts`` (the bags' starts after the first) lie at
    or before it."""
    counts = indices.new_zeros(indices.numel() + 1, dtype=starts.dtype)  # a start may equal numel (empty bags)
    return counts.index_add(0, starts, torch.ones_like(starts))[:-1].cumsum(0).to(starts.dtype)


def _ends_at_last_offset(weight, per_sample_weights, padding_idx) -> bool:
    """Does ATen's CPU kernel end the last bag at the last offset (``include_last_offset``)?
    Its index-select fast path does (float32, float16 or bfloat16 rows, unit strides, no padding
    index; seen on torch 2.13: float64 sums them);
    its other path sums the indices past it into the last bag.  Both count them in the bag's
    size, which a mean divides by.  The indices past it are then added into a dropped row."""
    return (weight.dtype in (torch.float32, torch.float16, torch.bfloat16) and weight.stride(1) == 1 and padding_idx < 0
            and (per_sample_weights is None or per_sample_weights.stride(0) == 1))


def _dropped(x, fill):
    """``x`` [bags, ...] with a row for the indices past the last bag (``_offset2bag``)."""
    return torch.cat([x, x.new_full((1, *x.shape[1:]), fill)])


def _embedding_bag(weight, indices, offsets, scale_grad_by_freq=False, mode=SUM, sparse=False,
                   per_sample_weights=None, include_last_offset=False, padding_idx=-1):
    if mode == MAX or scale_grad_by_freq:  # ATen's backward reads ATen's bookkeeping, not ours
        return NotImplemented
    bags = offsets.numel() - 1 if include_last_offset else offsets.numel()
    last_ends = include_last_offset and _ends_at_last_offset(weight, per_sample_weights, padding_idx)
    offset2bag = _offset2bag(indices, offsets[1:] if last_ends else offsets[1:bags])
    kept = indices != padding_idx
    accumulate = get_computation_dtype(weight.dtype)
    rows = weight[indices].to(accumulate)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.to(accumulate).unsqueeze(1)
    rows = torch.where(kept.unsqueeze(1), rows, 0)
    output = rows.new_zeros(bags + 1, weight.shape[1]).index_add(0, offset2bag, rows)[:bags]
    counts = offsets.new_zeros(bags + 1).index_add(0, offset2bag, kept.to(offsets.dtype))
    bag_size = torch.cat([counts[:bags - 1], counts[bags - 1:].sum(0, keepdim=True)]) if bags else counts[:0]
    if mode == MEAN:
        output = output / bag_size.clamp(min=1).to(accumulate).unsqueeze(1)
    return output.to(weight.dtype), offset2bag, bag_size, offsets.new_zeros(bags)


def _dense_backward(grad, indices, offset2bag, bag_size, maximum_indices, num_weights, scale_grad_by_freq,
                    mode, per_sample_weights, padding_idx=-1):
    if mode == MAX or scale_grad_by_freq:
        return NotImplemented
    accumulate = get_computation_dtype(grad.dtype)
    rows = _dropped(grad, 0)[offset2bag].to(accumulate)
    if mode == MEAN:
        rows = rows / _dropped(bag_size, 1)[offset2bag].clamp(min=1).to(accumulate).unsqueeze(1)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.to(accumulate).unsqueeze(1)
    rows = torch.where((indices != padding_idx).unsqueeze(1), rows, 0)
    return rows.new_zeros(num_weights, grad.shape[1]).index_add(0, indices, rows).to(grad.dtype)


def _backward(grad, indices, offsets, offset2bag, bag_size, maximum_indices, num_weights, scale_grad_by_freq, mode,
              sparse, per_sample_weights, padding_idx=-1):
    """The table's gradient as autograd asks for it: dense, unless ``sparse``."""
    if sparse:
        return NotImplemented
    return _dense_backward(grad, indices, offset2bag, bag_size, maximum_indices, num_weights, scale_grad_by_freq,
                           mode, per_sample_weights, padding_idx)


def _per_sample_weights_backward(grad, weight, indices, offsets, offset2bag, mode, padding_idx=-1):
    if mode != SUM:
        return NotImplemented
    accumulate = get_computation_dtype(grad.dtype)
    dots = (_dropped(grad, 0)[offset2bag].to(accumulate) * weight[indices].to(accumulate)).sum(1)
    return torch.where(indices != padding_idx, dots, 0).to(grad.dtype)


DECOMPOSITIONS = {aten._embedding_bag.default: _embedding_bag, aten._embedding_bag_forward_only.default: _embedding_bag,
                  aten._embedding_bag_backward.default: _backward, aten._embedding_bag_dense_backward.default: _dense_backward,
                  aten._embedding_bag_per_sample_weights_backward.default: _per_sample_weights_backward}
