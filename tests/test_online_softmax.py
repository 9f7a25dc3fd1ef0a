"""Online softmax: on Triton targets a looped max → sum of exp(x - max) is one pass over the
row (``planning.online``), so a softmax row longer than local SRAM is read twice, not three
times.  Checked under Triton's interpreter against eager, forward and backward, on the edges:
rows not a multiple of RBLOCK, -inf entries, fully -inf rows (NaN in eager), bf16."""

import pytest
import torch

from utils import assert_online_reads_once, check, compiled_kernels, planned_kernels

ROW = 70000  # longer than h100's and mi300x's local SRAM, and not a multiple of RBLOCK (4096)
FNS = {"softmax": lambda x: x.softmax(-1), "log_softmax": lambda x: x.log_softmax(-1)}


def options(device):
    return {"device": device, "executor": "interpret"}


def with_infinities(dtype=torch.float32):
    torch.manual_seed(0)
    x = torch.randn(4, ROW, dtype=dtype)
    x[1, 7:5000] = float("-inf")   # masked lanes spanning whole RBLOCK steps
    x[2] = float("-inf")           # a fully masked row: eager gives NaN
    x[3, ROW - 1] = 30.0           # the max in the last, partial step: the sum is rescaled late
    return x


@pytest.mark.parametrize("name", sorted(FNS))
def test_plan_is_online_and_reads_the_row_twice(name):
    fn = FNS[name]
    x = torch.randn(2, ROW)
    _, kernels = planned_kernels(fn, (x,), options("h100"))
    online = [k for k in kernels if k.tiling.online]
    assert len(online) == 1 and online[0].tiling.strategy == "looped"
    assert "looped, online max+sum" in str(online[0].tiling)
    _, rendered = compiled_kernels(fn, (x,), options("h100"))
    source = "\n".join(k.source for k in rendered)
    assert source.count("tl.load(arg0 ") == 2, source  # one online pass, one to normalize


@pytest.mark.parametrize("device", ["h100", "mi300x"])
@pytest.mark.parametrize("name", sorted(FNS))
def test_online_matches_eager_with_infinities(name, device):
    fn = FNS[name]
    out, kernels = planned_kernels(fn, (with_infinities(),), options(device))
    assert any(k.tiling.online for k in kernels)
    expected = fn(with_infinities())
    assert expected[2].isnan().all()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("name", sorted(FNS))
def test_online_bf16(name):
    fn = FNS[name]
    x = with_infinities(torch.bfloat16)  # a bf16 row fits h100's SRAM (one-pass): mi300x's 64 KiB it does not
    out, kernels = planned_kernels(fn, (x,), options("mi300x"))
    assert any(k.tiling.online for k in kernels)
    torch.testing.assert_close(out, fn(x), rtol=2e-2, atol=2e-2, equal_nan=True)


@pytest.mark.parametrize("name", sorted(FNS))
def test_online_backward(name):
    check(FNS[name], torch.randn(2, ROW), grad=True, atol=1e-5, rtol=1e-4, options=options("h100"))


def test_not_online_when_the_sum_is_of_another_row():
    """exp(y - max(x)): the max is not of the summed value, so each keeps its own pass."""
    def fn(x, y):
        m = x.amax(-1, keepdim=True)
        return (y - m).exp().sum(-1), m
    x, y = torch.randn(2, ROW), torch.randn(2, ROW)
    out, kernels = planned_kernels(fn, (x, y), options("h100"))
    assert not any(k.tiling.online for k in kernels)
    torch.testing.assert_close(out, fn(x, y))


def test_cost_counts_one_pass_fewer_only_with_the_capability():
    x = torch.randn(16, 65536)
    _, kernels = planned_kernels(FNS["softmax"], (x,), options("h100"))
    kernel = next(k for k in kernels if k.tiling.online)
    assert_online_reads_once(kernel, "online_softmax")


@pytest.mark.parametrize("device", ["h100", "mi300x"])
def test_online_max_and_sum_as_outputs(device):
    """The sum itself, as eager computes it: exp(-inf - -inf) makes a fully -inf row's sum NaN."""
    def fn(x):
        m = x.amax(-1, keepdim=True)
        return m, (x - m).exp().sum(-1)
    out, kernels = planned_kernels(fn, (with_infinities(),), options(device))
    assert any(k.tiling.online for k in kernels)
    expected = fn(with_infinities())
    assert expected[1][2].isnan() and not expected[1][[0, 1, 3]].isnan().any()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_online_max_and_sum_kept_in_registers():
    """A logsumexp whose max and sum only its own kernel reads: both stay local (never stored)."""
    def fn(x):
        m = x.amax(-1, keepdim=True)
        return m.squeeze(-1) + (x - m).exp().sum(-1).log()
    out, kernels = planned_kernels(fn, (with_infinities(),), options("h100"))
    kernel = next(k for k in kernels if k.tiling.online)
    assert {kernel.tiling.online.first, kernel.tiling.online.second} <= kernel.group.local
    torch.testing.assert_close(out, fn(with_infinities()), rtol=1e-5, atol=1e-5, equal_nan=True)


def test_online_dynamic_row():
    """A symbolic row length: the fully -inf test also asks whether the row is empty at run time."""
    for rows, columns in ((3, 70001), (5, 80001)):
        check(FNS["softmax"], torch.randn(rows, columns), dynamic=True, atol=1e-5, rtol=1e-4, options=options("h100"))
