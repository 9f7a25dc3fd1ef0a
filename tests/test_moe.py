"""MoE routing without fallbacks on Triton targets: the stable argsort kernel (sort, argsort,
topk) under Triton's interpreter against eager, the router, the grouped GEMM and a small MoE."""
import copy

import pytest
import torch

import torch_hetero
from torch_hetero.runtime import triton_run
from torch_hetero.tools import model_zoo
from utils import check, compile_hetero, compiled_kernels, planned_kernels

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
    pytest.param(lambda x: torch.sort(x, dim=1, stable=True), lambda: (torch.randn(4, 33, 5).double(),),
                 id="float64_middle_dim"),
    pytest.param(lambda x: torch.sort(x, dim=-1, stable=True, descending=True),
                 lambda: (torch.randint(-5, 5, (3, 17), dtype=torch.int8),), id="int8_descending"),
    pytest.param(lambda x: (torch.kthvalue(x, 4, 1), torch.median(x, 1)), lambda: (torch.randn(5, 11),),
                 id="kthvalue_median"),
])
def test_sorting_on_triton_matches_eager(fn, make_inputs):
    check(fn, *make_inputs(), options=INTERPRET, native=True)


def test_rows_past_one_block_sort_by_ranks():
    """Rows longer than a bitonic block (MAX_PROGRAM_ELEMENTS), or of a length known only at run
    time, sort by pairwise ranks, block against block."""
    sort = lambda x: torch.sort(x, dim=1, stable=True, descending=True)  # noqa: E731
    check(sort, torch.tensor([[3., NAN, 1., 3., -INF, 0.] * 25] * 3), dynamic=True, options=INTERPRET, native=True)
    check(lambda x: torch.argsort(x, dim=1, stable=True), torch.randint(0, 4, (3, 150)), dynamic=True,
          options=INTERPRET, native=True)
    plans = planned_kernels(sort, (torch.randn(2, 4100),), {"device": "rivos-sim"})[1]
    assert [k.tiling.strategy for k in plans][:1] == ["pairwise ranks"]
    # the estimate prices the comparisons: every pair of a long row, a network's steps in a block
    ranks, bitonic = (explain(sort, torch.randn(2, n), device="h100").estimate_us for n in (4100, 4096))
    assert ranks > 10 * bitonic, (ranks, bitonic)


def test_router_softmax_topk_renormalize_matches_eager():
    """The router of tests/test_schedule_goldens.py (``moe_router``): three kernels per row block
    — softmax's max and sum, the bitonic sort (the softmax recomputed inline), the top-2 gathered
    and renormalized — forward and backward."""
    def router(logits):
        weights, experts = logits.softmax(-1).topk(2)
        return weights / weights.sum(-1, keepdim=True), experts
    check(router, torch.randn(37, 8), grad=True, options=INTERPRET, native=True)


def test_sorting_is_a_triton_kernel_not_debt():
    x = torch.randn(4, 9)
    report = explain(lambda v: torch.sort(v, 1), x, device="h100")
    assert not report.fallbacks and "a sort runs alone" in report.schedule and "bitonic" in report.schedule


def _offsets(counts):
    return torch.tensor(counts, dtype=torch.int32).cumsum(0, dtype=torch.int32)


@pytest.mark.parametrize("counts", [[3, 0, 9, 1], [0, 0, 13, 0], [13]], ids=["uneven_empty", "one_group", "single"])
def test_grouped_mm_generated_on_rivos_sim(counts):
    x, w = torch.randn(13, 24).bfloat16(), torch.randn(len(counts), 24, 16).bfloat16()
    offs = _offsets(counts)
    fn = lambda a, b, o: torch._grouped_mm(a, b, offs=o)  # noqa: E731
    check(fn, x, w, offs, options=INTERPRET, native=True, atol=1e-2, rtol=1e-2)
    report = explain(fn, x, w, offs)
    assert not report.externs and not report.fallbacks


def test_grouped_mm_backward_generated_on_rivos_sim():
    """Its gradient is two grouped GEMMs: a's as the forward's form, b's as 2-d x 2-d with the
    shared dim split by offs."""
    x, w = torch.randn(11, 16).bfloat16(), torch.randn(3, 16, 8).bfloat16()
    offs = _offsets([5, 0, 6])
    check(lambda a, b, o: torch._grouped_mm(a, b.transpose(-2, -1).transpose(-2, -1), offs=o), x, w, offs,
          grad=True, options=INTERPRET, native=True, atol=2e-2, rtol=2e-2)


def test_grouped_mm_is_priced_against_the_blas_library():
    """h100 declares cuBLAS: the grouped GEMM is priced against it (both estimates in the
    reason), and at this size the library's call wins."""
    x, w, offs = torch.randn(8, 16).bfloat16(), torch.randn(2, 16, 8).bfloat16(), _offsets([3, 5])
    report = explain(lambda a, b, o: torch._grouped_mm(a, b, offs=o), x, w, offs, device="h100")
    assert [e.name for e in report.externs], report.schedule
    assert "library call: cuBLAS, declared by the profile; est. cuBLAS" in report.schedule, report.schedule


@pytest.mark.parametrize("options", [INTERPRET, {}], ids=["triton", "host"])
def test_histc_over_a_given_range_is_native(options):
    """The tokens per expert of Hugging Face's grouped-GEMM experts: expert ids as floats."""
    ids = torch.tensor([[0., 3., 3., 7.], [7., 7., 2., 0.], [-1., 8., NAN, 6.99]])
    check(lambda v: torch.histc(v, bins=8, min=0, max=7), ids, options=options, native=True)
    check(lambda v: torch.histc(v, bins=5, min=-1.5, max=2.5), torch.randn(3, 40), options=options, native=True)


HOST = {"device": "rivos-sim", "executor": "host"}


def test_moe_model_on_rivos_sim_matches_eager():
    """The zoo's Qwen3-MoE, planned for rivos-sim (no libraries) and run by the host executor
    (the whole model under the interpreter takes half a minute): its forward has no extern and
    no fallback; one training step's gradients are as close to float32's as eager's."""
    zoo = model_zoo.build("qwen3_moe")
    torch._dynamo.reset()
    with torch.no_grad():
        expected = zoo.main_output(zoo.model(*zoo.inputs))
        actual = zoo.main_output(compile_hetero(zoo.model, options=HOST, native=True)(*zoo.inputs))
    torch.testing.assert_close(actual, expected, atol=zoo.tolerance, rtol=zoo.tolerance)
    # bfloat16 gradients differ from eager's by rounding alone about as much as eager's differ
    # from float32's (1-2% of the largest): so each is measured against a float32 eager step,
    # and the compiled step must be about as close to it as bfloat16 eager is
    model = zoo.model.train()
    twin, reference = copy.deepcopy(model), copy.deepcopy(model).float()
    torch._dynamo.reset()
    for run in (model, compile_hetero(twin, options=HOST), reference):
        zoo.main_output(run(*zoo.inputs)).float().pow(2).mean().backward()
    for (name, p), q, r in zip(model.named_parameters(), twin.parameters(), reference.parameters()):
        scale = r.grad.abs().max()
        eager, compiled = ((g.grad.float() - r.grad).abs().max() / scale for g in (p, q))
        assert compiled <= 1.5 * eager + 2e-3, f"{name}: {compiled:.4f} from float32, eager bfloat16 {eager:.4f}"


def test_moe_block_under_the_interpreter():
    """One MoE block (router, top-2, renormalize, sort by expert, histc, grouped GEMMs, the
    weighted sum back per token) as generated Triton, forward (strict: no fallback) and backward.  Its backward's one
    fallback: the bfloat16 accumulating scatter of the token gather's gradient (no portable
    16-bit atomics)."""
    block = model_zoo.build("qwen3_moe").model.model.layers[0].mlp
    x = torch.randn(1, 12, 128).bfloat16()
    with torch.no_grad():
        check(block, x, options=INTERPRET, native=True, atol=2e-2, rtol=2e-2)
    check(block, x, grad=True, options=INTERPRET, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("target", ["cuda:90", "hip:gfx942"])
def test_sort_and_grouped_gemm_compile_ahead_for_real_targets(target):
    """Both sorts (the bitonic network's hypercube; the ranks' [XBLOCK, RBLOCK, RBLOCK]
    comparison) and the grouped GEMM (a runtime branch per group; the gradient's loop over a
    group's span) build for GPUs without one."""
    offs = _offsets([3, 0, 10])
    def fn(keys, long, a, b, grad):
        return (torch.sort(keys, dim=1, stable=True, descending=True), torch.argsort(long, dim=1, stable=True),
                torch._grouped_mm(a, b, offs=offs), torch._grouped_mm(a.t(), grad, offs=offs))
    inputs = (torch.randn(5, 130), torch.randint(0, 9, (2, 4100)), torch.randn(13, 24).bfloat16(),
              torch.randn(3, 24, 16).bfloat16(), torch.randn(13, 16).bfloat16())
    _, kernels = compiled_kernels(fn, inputs, {"device": "rivos-sim"})
    with torch.no_grad():
        source = explain(fn, *inputs).code["inference.triton.py"]
    shared = triton_run.compile_ahead(source, kernels, target)
    assert set(shared) == {k.name for k in kernels} and len(shared) == 5
