"""A zero size anywhere is a valid input: empty batches, zero-sized matmul dims (k == 0 is
zeros plus the bias), and empty values through conv, attention, reductions and norms, on the
host and every Triton profile, with static and dynamic shapes; where eager raises, so do we."""

import pytest
import torch
import torch.nn.functional as F

import torch_hetero
from torch_hetero.device_models import get_profile, list_profiles
from torch_hetero.planning.tiling import plan_matmul
from utils import check, compile_hetero

TRITON_PROFILES = [name for name in list_profiles() if get_profile(name).codegen == "triton"]
EXECUTORS = [pytest.param({}, id="cpu"), pytest.param({"device": "h100"}, id="h100"),
             pytest.param({"device": "h100", "executor": "interpret"}, id="interpret")]


def linear_gelu(x, w, b):
    return F.gelu(F.linear(x, w, b))


MATMULS = {  # m, k, n (and a batch for bmm)
    "empty_m": (linear_gelu, lambda: (torch.randn(0, 16), torch.randn(8, 16), torch.randn(8))),
    "empty_n": (linear_gelu, lambda: (torch.randn(4, 16), torch.randn(0, 16), torch.randn(0))),
    "k0_bias": (linear_gelu, lambda: (torch.randn(40, 0), torch.randn(50, 0), torch.randn(50))),
    "k0_mm": (lambda x, y: (x @ y).sigmoid(), lambda: (torch.randn(4, 0), torch.randn(0, 5))),
    "empty_batch_3d": (linear_gelu, lambda: (torch.randn(0, 5, 16), torch.randn(8, 16), torch.randn(8))),
    "empty_batch_bmm": (lambda x, y: (x @ y) + 1, lambda: (torch.randn(0, 4, 16), torch.randn(0, 16, 8))),
}


@pytest.mark.parametrize("case", MATMULS)
@pytest.mark.parametrize("device", ["cpu"] + TRITON_PROFILES)
def test_zero_sized_matmuls_on_every_profile(device, case):
    fn, make = MATMULS[case]
    torch.manual_seed(0)
    check(fn, *make(), grad=True, atol=1e-5, rtol=1e-5, options={"device": device})


@pytest.mark.parametrize("device", ["cpu", "h100", "mtia-v2"])
def test_an_empty_batch_after_a_dynamic_compile(device):
    torch.manual_seed(0)
    w, b = torch.randn(8, 16), torch.randn(8)
    compiled = compile_hetero(linear_gelu, dynamic=True, options={"device": device})
    for batch in (4, 0, 3):
        x = torch.randn(batch, 5, 16)
        torch.testing.assert_close(compiled(x, w, b), linear_gelu(x, w, b))


@pytest.mark.parametrize("device", TRITON_PROFILES)
def test_k0_tiles_like_one_k_step_and_an_empty_output_has_no_padding(device):
    """With k == 0 each program still zeroes and stores an output tile: the tile is the one a
    single K step gets, not the largest one (which would keep the epilogue out of SRAM)."""
    profile = get_profile(device)
    k0, k1 = plan_matmul(1, 40, 50, 0, torch.float32, profile), plan_matmul(1, 40, 50, 1, torch.float32, profile)
    assert (k0.bm, k0.bn, k0.bk, k0.stages) == (k1.bm, k1.bn, k1.bk, k1.stages)
    assert k0.padding == 1.0
    for batch, m, n in [(0, 4, 4), (1, 0, 4), (1, 4, 0)]:
        empty = plan_matmul(batch, m, n, 16, torch.float32, profile)
        assert empty.waves == 0 and empty.padding == 0


def test_k0_runs_the_matmul_template_with_its_epilogue_under_the_interpreter():
    torch.manual_seed(0)
    x, w, b = torch.randn(40, 0), torch.randn(50, 0), torch.randn(50)
    out = check(linear_gelu, x, w, b, options={"device": "h100", "executor": "interpret"})
    torch.testing.assert_close(out, F.gelu(b).expand(40, 50))
    torch._dynamo.reset()
    assert "epilogue of aten.addmm.default" in torch_hetero.explain(linear_gelu, x, w, b, device="h100").schedule


mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()

EMPTY = {
    "conv_empty_batch": (lambda x, w: F.conv2d(x, w, padding=1).relu(),
                         lambda: (torch.randn(0, 3, 8, 8), torch.randn(4, 3, 3, 3)), True),
    "conv_no_input_channels": (lambda x, w: F.conv2d(x, w).relu(),
                               lambda: (torch.randn(1, 0, 5, 5), torch.randn(2, 0, 3, 3)), False),
    "sdpa_empty_batch": (F.scaled_dot_product_attention, lambda: (torch.randn(0, 2, 4, 8),) * 3, True),
    "sdpa_no_keys": (F.scaled_dot_product_attention,
                     lambda: (torch.randn(1, 2, 4, 8), torch.randn(1, 2, 0, 8), torch.randn(1, 2, 0, 8)), False),
    "mha_empty_batch": (lambda x: mha(x, x, x, need_weights=False)[0], lambda: (torch.randn(0, 4, 8),), False),
    "sum_mean_var_empty_dim": (lambda x: (x.sum(1), x.mean(1), x.var(1), x.prod(1), x.logsumexp(1)),
                               lambda: (torch.randn(3, 0),), False),
    "amax_argmax_empty_batch": (lambda x: (x.amax(1), x.argmax(1), x.softmax(1)), lambda: (torch.randn(0, 4),), True),
    "cumsum_sort_empty": (lambda x: (x.cumsum(1), x.sort(1).values), lambda: (torch.randn(3, 0),), False),
    "layer_rms_group_norm_empty_batch": (
        lambda x, w: (F.layer_norm(x, (6,)), F.rms_norm(x, (6,), w), F.group_norm(x.view(0, 2, 3), 2)),
        lambda: (torch.randn(0, 6), torch.randn(6)), True),
    "batch_norm_eval_empty": (lambda x, m, v: F.batch_norm(x, m, v),
                              lambda: (torch.randn(0, 3, 4), torch.randn(3), torch.rand(3)), False),
    "pooling_empty_batch": (lambda x: (F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 2)),
                            lambda: (torch.randn(0, 2, 8, 8),), True),
    "embedding_no_indices": (lambda i, w: F.embedding(i, w) * 2,
                             lambda: (torch.zeros(0, 3, dtype=torch.long), torch.randn(10, 4)), True),
}


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("case", EMPTY)
@pytest.mark.parametrize("options", EXECUTORS)
def test_empty_values_through_layers(options, case, dynamic):
    fn, make, grad = EMPTY[case]
    torch.manual_seed(0)
    check(fn, *make(), grad=grad, dynamic=dynamic, atol=1e-5, rtol=1e-5, options=options)


@pytest.mark.parametrize("options", EXECUTORS)
def test_reductions_without_identity_over_an_empty_dim_raise_as_eager(options):
    x = torch.randn(3, 0)
    with pytest.raises(IndexError):
        x.argmax(1)
    with pytest.raises(IndexError):
        compile_hetero(lambda x: x.argmax(1), options=options)(x)
    torch._dynamo.reset()
    with pytest.raises(RuntimeError, match="zero-size dimension"):  # Dynamo's fake tensors raise first
        compile_hetero(lambda x: x.amax(1), options=options)(x)


def test_the_audit_of_an_empty_batch_finishes_on_every_device():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.LayerNorm(16), torch.nn.Linear(16, 32), torch.nn.GELU(),
                                torch.nn.Linear(32, 4)).eval()
    result = torch_hetero.audit(model, torch.randn(0, 16), ahead_of_time=False, progress=False)
    assert [d.device for d in result.devices] == list_profiles()
    assert all(d.error is None for d in result.devices), [d.error for d in result.devices]
