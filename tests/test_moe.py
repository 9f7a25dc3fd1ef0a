"""MoE routing without fallbacks on Triton targets: the stable argsort kernel (sort, argsort,
topk) under Triton's interpreter against eager, the router, the grouped GEMM and a small MoE."""
import pytest
import torch

import torch_hetero
from tests.utils import check

INTERPRET = {"device": "rivos-sim", "executor": "interpret"}
NAN, INF = float("nan"), float("inf")


def explain(fn, *args, device="rivos-sim"):
    torch._dynamo.reset()
    return torch_hetero.explain(fn, *args, device=device)


@pytest.mark.parametrize("fn,make_inputs", [
    pytest.param(lambda x: torch.sort(x, dim=1, stable=True), lambda: (torch.randn(5, 13),), id="row_not_pow2"),
    pytest.param(lambda x: torch.sort(x, dim=1, stable=True, descending=True),
                 lambda: (torch.tensor([[3., NAN, 1., 3., -NAN, 0., 1., -INF, INF, -0.0, 0.0]] * 2),),
                 id="descending_nan_inf_ties"),
    pytest.param(lambda x: torch.sort(x, dim=0, stable=True),
                 lambda: (torch.tensor([3., NAN, 1., 3., -NAN, 0., 1., -INF, INF, -0.0, 0.0]),), id="nan_inf_ties"),
    pytest.param(lambda x: torch.argsort(x, dim=1, stable=True), lambda: (torch.randint(0, 4, (3, 150)),),
                 id="int64_ties_longer_than_a_block"),
    pytest.param(lambda x: torch.argsort(x, dim=0, stable=True, descending=True),
                 lambda: (torch.randint(-3, 3, (40, 3), dtype=torch.int32),), id="int32_column_descending"),
    pytest.param(lambda x: torch.topk(x, 2, 1), lambda: (torch.randn(7, 8),), id="topk"),
    pytest.param(lambda x: torch.sort(x, dim=1, stable=True), lambda: (torch.randn(4, 0),), id="empty_rows"),
    pytest.param(lambda x: torch.sort(x, dim=1, stable=True)[1], lambda: (torch.randn(6, 9).bfloat16(),), id="bf16"),
])
def test_sorting_on_triton_matches_eager(fn, make_inputs):
    check(fn, *make_inputs(), options=INTERPRET, native=True)


def test_sorting_is_a_triton_kernel_not_debt():
    x = torch.randn(4, 9)
    report = explain(lambda v: torch.sort(v, 1), x, device="h100")
    assert not report.fallbacks and "a sort runs alone" in report.schedule
