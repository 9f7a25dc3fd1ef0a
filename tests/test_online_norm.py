"""Online layer norm: on Triton targets a looped mean → sum of (x - mean)² is one pass over
the row (``planning.online``: a running sum for the mean, Welford's running mean and squared
deviations for the variance), so a layer norm row longer than local SRAM is read twice, not
three times.  Checked under Triton's interpreter against eager, forward and backward, on the
edges: rows around RBLOCK, constant rows (variance 0), a mean large against the spread,
infinities and NaN, bf16."""
import pytest
import torch
import torch.nn.functional as F

from utils import assert_online_reads_once, check, compiled_kernels, planned_kernels, profile_variant

ROW = 70000  # longer than h100's local SRAM, and not a multiple of RBLOCK (4096)
TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2}


def layer_norm(x, weight, bias):
    return F.layer_norm(x, x.shape[-1:], weight, bias)


@pytest.fixture(scope="module")
def small_sram(tmp_path_factory):
    """mi300x with 8 KiB of local SRAM: rows of a few thousand floats are looped in RBLOCK=2048
    steps, so rows around RBLOCK stay cheap under the interpreter."""
    path = profile_variant(tmp_path_factory.mktemp("profiles"), "mi300x", "mi300x-8k",
                           ("local_sram_kib = 64 ", "local_sram_kib = 8 "))
    return {"device": path, "executor": "interpret"}


def _inputs(rows, columns, dtype=torch.float32):
    torch.manual_seed(0)
    return (torch.randn(rows, columns).to(dtype), torch.randn(columns).to(dtype), torch.randn(columns).to(dtype))


def _online(kernels):
    return [k for k in kernels if k.tiling.online]


def test_plan_is_online_and_reads_the_row_twice():
    """h100's plan and its Triton (run here by the host executor: the interpreter tests below
    run the same kernels on a small-SRAM profile)."""
    options = {"device": "h100"}
    x = torch.randn(2, ROW)
    fn = lambda x: F.layer_norm(x, (ROW,))  # noqa: E731
    out, kernels = planned_kernels(fn, (x,), options)
    [kernel] = _online(kernels)
    assert kernel.tiling.strategy == "looped" and "looped, online mean+variance" in str(kernel.tiling)
    torch.testing.assert_close(out, fn(x), atol=1e-5, rtol=1e-5)
    _, rendered = compiled_kernels(fn, (x,), options)
    source = "\n".join(k.source for k in rendered)
    assert source.count("tl.load(arg0 ") == 2, source  # one online pass, one to normalize
    assert "_welford" in source


# RBLOCK on the 8 KiB profile: 8192 / the bytes a row element touches (x, weight, bias, output)
RBLOCK = {torch.float32: 512, torch.bfloat16: 1024}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("columns", [lambda r: 2 * r - 1, lambda r: 2 * r, lambda r: 2 * r + 1],
                         ids=["2R-1", "2R", "2R+1"])
def test_online_layer_norm_matches_eager_around_rblock(small_sram, columns, dtype):
    inputs = _inputs(3, columns(RBLOCK[dtype]), dtype)
    out, kernels = planned_kernels(layer_norm, inputs, small_sram)
    assert [k.tiling.rblock for k in _online(kernels)] == [RBLOCK[dtype]]
    torch.testing.assert_close(out, layer_norm(*inputs), atol=TOL[dtype], rtol=TOL[dtype])


def test_constant_rows_and_a_large_mean(small_sram):
    """Variance 0 stays 0 (no negative variance from cancellation), and a mean 10⁴ times the
    spread loses nothing: what a sum of squares minus n·mean² would get wrong in fp32."""
    x = torch.randn(4, 2100)
    x[0] = 0.1
    x[1] = -7.0
    x[2] = 1e4 + torch.randn(2100)
    fn = lambda x: torch.var_mean(x, -1, correction=0)  # noqa: E731
    out, kernels = planned_kernels(fn, (x,), small_sram)
    assert _online(kernels)
    var, mean = out
    assert (var[:2] >= 0).all() and var[:2].max() < 1e-10
    torch.testing.assert_close(out, fn(x.double()), check_dtype=False, atol=1e-3, rtol=1e-3)


def test_infinities_and_nan_as_eager(small_sram):
    """An infinite element makes the row's variance NaN (inf - inf) and its mean infinite (as
    x.mean() is; eager CPU's var_mean, itself a Welford pass, says NaN there), a NaN element
    both NaN; other rows are untouched."""
    x = torch.randn(5, 2100)
    x[0, 2060] = float("inf")
    x[1, 10] = float("-inf")
    x[1, 2050] = float("inf")
    x[2, 2047] = float("nan")
    x[3, :] = float("-inf")
    fn = lambda x: torch.var_mean(x, -1)  # noqa: E731
    (var, mean), kernels = planned_kernels(fn, (x,), small_sram)
    assert _online(kernels)
    assert var[:4].isnan().all() and mean[0] == float("inf") and mean[3] == float("-inf")
    torch.testing.assert_close(var, torch.var(x, -1), atol=1e-4, rtol=1e-4, equal_nan=True)
    torch.testing.assert_close(mean, x.mean(-1), atol=1e-4, rtol=1e-4, equal_nan=True)


def test_unbiased_var_and_mean_kept_dims(small_sram):
    """The variance's own epilogue (here n - 1) applies to Welford's squared deviations."""
    x = torch.randn(3, 2100)
    fn = lambda x: torch.var_mean(x, -1, correction=1, keepdim=True)  # noqa: E731
    out, kernels = planned_kernels(fn, (x,), small_sram)
    assert _online(kernels)
    torch.testing.assert_close(out, fn(x), atol=1e-5, rtol=1e-5)


def test_online_layer_norm_backward(small_sram):
    check(layer_norm, *_inputs(2, 1025), grad=True, atol=1e-4, rtol=1e-4, options=small_sram, native=True)


def test_cost_counts_one_pass_fewer_only_with_the_capability():
    x = torch.randn(16, 65536)
    _, kernels = planned_kernels(lambda x: F.layer_norm(x, (65536,)), (x,), {"device": "h100"})
    [kernel] = _online(kernels)
    assert_online_reads_once(kernel, "online_norm")


def test_not_online_when_the_deviation_is_from_another_mean(small_sram):
    """Σ(y - mean(x))²: the mean is not of the squared value's row, so each keeps its pass."""
    def fn(x, y):
        m = x.mean(-1, keepdim=True)
        return ((y - m) * (y - m)).sum(-1), m
    x, y = torch.randn(2, 3000), torch.randn(2, 3000)
    out, kernels = planned_kernels(fn, (x, y), small_sram)
    assert not _online(kernels)
    torch.testing.assert_close(out, fn(x, y), atol=1e-4, rtol=1e-4)
