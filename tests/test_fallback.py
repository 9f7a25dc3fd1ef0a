"""ATen fallback for ops without a native lowering, and the explain() report."""

import pytest
import torch
import torch.nn.functional as F

import torch_hetero
from utils import check


# (a) Ops unlikely to be lowered natively must still work in strict mode
#     (they run through the ATen fallback instead of raising).
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("fn,make_inputs,grad", [
    pytest.param(lambda x: torch.histc(x, 5) * 2 + 1, lambda: (torch.randn(3, 5, 7),), False, id="histc"),
    pytest.param(lambda x: torch.sort(x.sin(), dim=-1), lambda: (torch.randn(3, 5, 7),), False, id="sort"),
    pytest.param(lambda m: torch.linalg.det(m + 2 * torch.eye(4)).exp(), lambda: (torch.randn(3, 4, 4),), True,
                 id="linalg_det"),
])
def test_fallback_op_is_correct(fn, make_inputs, grad, dynamic):
    torch.manual_seed(0)
    check(fn, *make_inputs(), dynamic=dynamic, grad=grad, atol=1e-4, rtol=1e-4)


# (b) The report.
def pointwise_chain(x):
    return x.sin().cos() + 1


def with_histc(x):
    return torch.histc(x * 2, bins=5).exp()


def mixed(x, w):
    return F.layer_norm(x, (7,)).softmax(-1) @ w + torch.histc(x, 4).sum()


def explain(fn, *args):
    torch._dynamo.reset()
    return torch_hetero.explain(fn, *args)


def x3():
    torch.manual_seed(0)
    return torch.randn(3, 5, 7)


@pytest.mark.parametrize("fn,args", [
    pytest.param(pointwise_chain, lambda: (x3(),), id="pointwise"),
    pytest.param(with_histc, lambda: (x3(),), id="histc"),
    pytest.param(mixed, lambda: (x3(), torch.randn(7, 4)), id="mixed"),
])
def test_report_structure(fn, args):
    report = explain(fn, *args())
    assert str(report).strip()
    assert isinstance(report.kernels, list) and report.kernels
    for kernel in report.kernels:
        assert isinstance(kernel.name, str) and kernel.name
        assert kernel.target == "cpp"
        assert kernel.aten_ops and all(op.startswith("aten.") for op in kernel.aten_ops), kernel.aten_ops
        graph, function = kernel.name.split(".")
        assert f'extern "C" void {function}(' in report.code[f"{graph}.cpp"], f"no code for {kernel.name}"
    assert isinstance(report.fallbacks, dict)
    assert all(isinstance(op, str) and isinstance(n, int) and n > 0 for op, n in report.fallbacks.items())
    assert isinstance(report.code, dict) and report.code
    assert all(isinstance(src, str) and src.strip() for src in report.code.values())


def test_report_lists_histc_fallback():
    report = explain(with_histc, x3())
    assert report.fallbacks.get("aten.histc", 0) >= 1, report.fallbacks


def test_report_pointwise_chain_is_one_fused_kernel():
    report = explain(pointwise_chain, x3())
    assert report.fallbacks == {}
    assert len(report.kernels) == 1, [k.name for k in report.kernels]
    assert {"aten.sin", "aten.cos", "aten.add"} <= set(report.kernels[0].aten_ops)


# (c) Code generation is deterministic.
@pytest.mark.parametrize("fn,args", [
    pytest.param(pointwise_chain, lambda: (x3(),), id="pointwise"),
    pytest.param(mixed, lambda: (x3(), torch.randn(7, 4)), id="mixed"),
])
def test_codegen_is_deterministic(fn, args):
    inputs = args()
    assert explain(fn, *inputs).code == explain(fn, *inputs).code
