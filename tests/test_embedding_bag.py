"""EmbeddingBag without ATen (``torch_hetero/embedding_bag.py``): sum and mean pooling, per-sample
weights, ``padding_idx``, offsets with and without the last one, the 2-d input form and empty
bags, forward and backward, generated on the host and as Triton (under the interpreter), each
matching eager with no fallback; max pooling stays ATen's, reported."""
import pytest
import torch
import torch.nn.functional as F

import torch_hetero
from utils import check, planned_kernels

PROFILES = [{}, {"device": "h100", "executor": "interpret"}, {"device": "mtia-v2", "executor": "interpret"}]
IDS = ["host", "h100", "mtia-v2"]


def _bags(rows=40, dim=8, seed=0):
    """A table, 24 indices in bags of 3, 0 (empty), 4, 9, 8 and 0, per-sample weights."""
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(rows, dim, generator=generator)
    indices = torch.randint(0, rows, (24,), generator=generator)
    offsets = torch.tensor([0, 3, 3, 7, 16, 24, 24])
    return table, indices, offsets, torch.rand(24, generator=generator)


@pytest.mark.parametrize("options", PROFILES, ids=IDS)
def test_sum_with_per_sample_weights_and_the_last_offset(options):
    table, indices, offsets, weights = _bags()
    check(lambda t, i, o, w: F.embedding_bag(i, t, o, mode="sum", per_sample_weights=w, include_last_offset=True),
          table, indices, offsets, weights, grad=True, options=options, native=True)


@pytest.mark.parametrize("options", PROFILES, ids=IDS)
def test_mean_with_padding_and_empty_bags(options):
    table, indices, offsets, _ = _bags()
    indices[[1, 5, 6]] = 7     # padding: not summed, not counted in its bag's mean, no gradient
    check(lambda t, i, o: F.embedding_bag(i, t, o, mode="mean", padding_idx=7), table, indices, offsets[:-1],
          grad=True, options=options, native=True)


@pytest.mark.parametrize("options", PROFILES, ids=IDS)
def test_two_dimensional_input(options):
    table, indices, _, _ = _bags()
    check(lambda t, i: (F.embedding_bag(i, t, mode="sum"), F.embedding_bag(i, t, mode="mean")),
          table, indices.view(6, 4), grad=True, options=options, native=True)


def test_module_with_bfloat16_table_accumulates_in_float32():
    bag = torch.nn.EmbeddingBag(300, 16, mode="sum").to(torch.bfloat16)
    _, indices, offsets, _ = _bags(rows=300)
    check(bag, indices, offsets[:-1], atol=1e-2, rtol=1e-2, native=True)


def test_one_kernel_gathers_and_adds_into_the_bags():
    """The forward is a gather-and-scatter-add kernel tiled like any other (local SRAM): no
    extern call, and no [indices, dim] intermediate in memory."""
    table, indices, offsets, weights = _bags(rows=1000, dim=64)
    _, kernels = planned_kernels(lambda t, i, o, w: F.embedding_bag(i, t, o, per_sample_weights=w, mode="sum"),
                                 (table, indices, offsets[:-1], weights), {"device": "mtia-v2", "executor": "interpret"})
    assert all(k.group.matmul is None for k in kernels)
    report = torch_hetero.explain(lambda t, i, o, w: F.embedding_bag(i, t, o, per_sample_weights=w, mode="sum"),
                                  table, indices, offsets[:-1], weights, device="mtia-v2")
    assert not report.fallbacks and not report.externs, report


def test_max_pooling_is_an_aten_fallback_and_correct():
    table, indices, offsets, _ = _bags()
    with pytest.warns(torch_hetero.errors.FallbackWarning, match="_embedding_bag"):
        check(lambda t, i, o: F.embedding_bag(i, t, o, mode="max"), table, indices, offsets[:-1], grad=True)


@pytest.mark.parametrize("dtype, padding", [(torch.float32, None), (torch.float32, 7), (torch.float64, None)],
                         ids=["fast_path", "padding", "float64"])
def test_indices_past_the_last_offset_as_eager_treats_them(dtype, padding):
    """With ``include_last_offset`` ATen's CPU kernel drops the indices past the last offset from
    the last bag's sum on its fast path, and sums them elsewhere; a mean divides by them either
    way.  On the fast path eager's gradient is not comparable: its backward reads them as part of
    the last bag (a sum's per-sample weights' gradient there is uninitialized memory, torch 2.13)."""
    table, indices, offsets, _ = _bags()
    ends = torch.tensor([0, 3, 3, 7, 16])   # 8 indices after the last offset
    for mode in ("sum", "mean"):
        check(lambda t, i, o: F.embedding_bag(i, t, o, mode=mode, include_last_offset=True, padding_idx=padding),
              table.to(dtype), indices, ends, grad=padding is not None or dtype == torch.float64, native=True)
