"""Every matmul generated where the profile declares no BLAS library (``Target.generates_gemm``):
mm, bmm and addmm are the Triton template in the device model's tile, with or without an
epilogue, checked against eager under Triton's interpreter (forward and backward) and, on the
host executor, with the host's own GEMM; where the profile declares a library the matmul stays
a call and the plan says which."""
import pytest
import torch
import torch.nn.functional as F

import torch_hetero
from torch_hetero.device_models import get_profile
from torch_hetero.runtime import triton_run
from torch_hetero.tools.report import compile_and_run
from utils import check, compiled_kernels, planned_kernels, profile_variant

RIVOS = {"device": "rivos-sim", "executor": "interpret"}
TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def _randn(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


# (name, fn, input shapes); sizes that are not multiples of any tile, size-1 and empty dims
MM_CASES = [
    ("mm", torch.mm, [(37, 150), (150, 29)]),  # several BK steps
    ("mm_size1", torch.mm, [(1, 7), (7, 1)]),
    ("mm_empty_m", torch.mm, [(0, 7), (7, 5)]),
    ("mm_empty_n", torch.mm, [(6, 7), (7, 0)]),
    ("mm_k0", torch.mm, [(6, 0), (0, 5)]),
    ("mm_transposed", lambda a, b: a.t() @ b.t(), [(50, 37), (29, 50)]),
    ("bmm", torch.bmm, [(3, 17, 20), (3, 20, 9)]),
    ("bmm_transposed", lambda a, b: torch.bmm(a.transpose(1, 2), b), [(2, 20, 17), (2, 20, 9)]),
    ("bmm_empty_batch", torch.bmm, [(0, 4, 5), (0, 5, 3)]),
    ("addmm_bias1d", lambda c, a, b: torch.addmm(c, a, b), [(29,), (37, 50), (50, 29)]),
    ("addmm_bias2d", lambda c, a, b: torch.addmm(c, a, b), [(37, 29), (37, 50), (50, 29)]),
    ("addmm_bias_row", lambda c, a, b: torch.addmm(c, a, b), [(1, 29), (37, 50), (50, 29)]),
    ("addmm_bias_column", lambda c, a, b: torch.addmm(c, a, b), [(37, 1), (37, 50), (50, 29)]),
    ("addmm_scaled", lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=2.0), [(29,), (37, 50), (50, 29)]),
    ("addmm_k0", lambda c, a, b: torch.addmm(c, a, b), [(5,), (6, 0), (0, 5)]),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name, fn, shapes", MM_CASES, ids=[c[0] for c in MM_CASES])
def test_generated_matmul_matches_eager_under_the_interpreter(name, fn, shapes, dtype):
    torch.manual_seed(0)
    inputs = [_randn(*s, dtype=dtype) for s in shapes]
    check(fn, *inputs, atol=TOL[dtype], rtol=TOL[dtype], options=RIVOS, native=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("fn, shapes", [
    (lambda x, w, b: F.linear(x, w, b), [(19, 24), (33, 24), (33,)]),
    (lambda a, b: torch.bmm(a, b.transpose(1, 2)), [(2, 17, 20), (2, 9, 20)]),
], ids=["linear", "bmm_transposed"])
@pytest.mark.parametrize("executor", ["interpret", "host"])
def test_generated_matmul_gradients_under_the_interpreter(fn, shapes, dtype, executor):
    """Backward graphs multiply transposed operands (x^T @ grad, grad @ w): generated too (the
    host executor runs the same plan with its own GEMM)."""
    torch.manual_seed(0)
    inputs = [_randn(*s, dtype=dtype) for s in shapes]
    check(fn, *inputs, grad=True, atol=TOL[dtype] * 2, rtol=TOL[dtype] * 2, native=True,
          options={"device": "rivos-sim", "executor": executor})


def test_fp32_matmul_stays_ieee():
    """Operands whose products TF32 would round: the generated GEMM keeps fp32 exact, as eager."""
    a = torch.full((16, 32), 1 + 2 ** -20)
    b = torch.full((32, 16), 1 + 2 ** -20)
    out, [kernel] = compiled_kernels(torch.mm, (a, b), RIVOS)
    assert "_dot(a, b, True)" in kernel.source
    torch.testing.assert_close(out, a @ b, rtol=0, atol=0)


def test_plain_matmuls_are_kernels_where_the_profile_has_no_blas():
    """No extern left on rivos-sim; the plan gives each matmul its tile, and the host executor
    (the same plan, run as host C++) calls its own GEMM for it and launches nothing else."""
    torch.manual_seed(0)
    a, b, c = torch.randn(37, 50), torch.randn(50, 29), torch.randn(3, 8, 8)
    fn = lambda a, b, c: (a @ b, torch.bmm(c, c))  # noqa: E731
    for executor in ("interpret", "host"):
        out, kernels = planned_kernels(fn, (a, b, c), {"device": "rivos-sim", "executor": executor})
        assert [(k.group.matmul.name, k.group.nodes, k.matmul_tile is not None) for k in kernels] == [
            ("aten.mm.default", (), True), ("aten.bmm.default", (), True)]
        assert all(k.library_only == (executor == "host") for k in kernels)
        torch.testing.assert_close(out, fn(a, b, c))
    report = torch_hetero.explain(fn, a, b, c, device="rivos-sim")
    assert report.externs == [] and report.fallbacks == {}
    assert "generated in the device model's tile (the profile declares no BLAS library)" in report.schedule
    assert "def kernel0" in report.code["inference.triton.py"] and "inference.cpp" not in report.code


def test_library_matmul_says_why():
    report = torch_hetero.explain(torch.mm, torch.randn(8, 16), torch.randn(16, 8), device="h100")
    assert [e.op for e in report.externs] == ["aten.mm"]
    assert "library call: cuBLAS, declared by the profile" in report.schedule


def test_integer_matmul_falls_back_where_nothing_generates_it():
    """tl.dot takes no int64: on a target without BLAS the call is reported as debt, not hidden."""
    a, b = torch.randint(-5, 5, (6, 7)), torch.randint(-5, 5, (7, 4))
    report = torch_hetero.explain(torch.mm, a, b, device="rivos-sim")
    assert report.fallbacks == {"aten.mm": 1}
    check(torch.mm, a, b, options={"device": "rivos-sim"})


@pytest.mark.parametrize("profile, library", [("a100", "cuBLAS"), ("h100", "cuBLAS"), ("mi300x", "rocBLAS\", \"hipBLASLt")])
def test_generated_plain_matmul_compiles_for_the_real_target(tmp_path, profile, library):
    """The profile without its BLAS library: the plain GEMM builds ahead of time for its target
    (cuda:80, cuda:90, hip:gfx942) in its tile, within its shared memory."""
    path = profile_variant(tmp_path, profile, f"{profile}-no-blas", (f'blas = ["{library}"]', "blas = []"))
    inputs = (torch.randn(256, 512, dtype=torch.bfloat16), torch.randn(512, 384, dtype=torch.bfloat16))
    [(_, graph, _)] = compile_and_run(torch.mm, inputs, {}, {"device": str(path)})
    kernels = graph.rendered["triton"]
    assert [k.origins for k in kernels] == [["aten.mm"]]
    [source] = [code for name, code in graph.code.items() if name.endswith(".triton.py")]
    built = triton_run.compile_ahead(source, kernels, get_profile(profile).triton_target)
    assert 0 < built["kernel0"].shared_bytes and not built["kernel0"].problems(get_profile(profile).local_sram_bytes)


def test_generated_matmul_with_dynamic_shapes():
    """Sizes as symbols: the template's bounds and grid read them at run time."""
    torch.manual_seed(0)
    for m, k, n in ((37, 150, 29), (5, 9, 70)):
        check(torch.mm, torch.randn(m, k), torch.randn(k, n), dynamic=True, atol=1e-4, rtol=1e-4,
              options=RIVOS, native=True)


def test_addmm_with_beta_zero_ignores_a_nan_bias():
    """As eager: beta = 0 drops the bias, NaNs included (0 * NaN would be NaN)."""
    bias = torch.full((29,), float("nan"))
    fn = lambda c, a, b: torch.addmm(c, a, b, beta=0.0, alpha=0.5)  # noqa: E731
    out = check(fn, bias, torch.randn(37, 50), torch.randn(50, 29), atol=1e-4, rtol=1e-4, options=RIVOS, native=True)
    assert not out.isnan().any()


FAMILY_CASES = [
    ("baddbmm", lambda c, a, b: torch.baddbmm(c, a, b, beta=0.5, alpha=2.0), [(2, 5, 7), (2, 5, 19), (2, 19, 7)]),
    ("baddbmm_broadcast_bias", lambda c, a, b: torch.baddbmm(c, a, b), [(7,), (2, 5, 19), (2, 19, 7)]),
    ("addbmm", lambda c, a, b: torch.addbmm(c, a, b, beta=0.5, alpha=2.0), [(5, 7), (3, 5, 19), (3, 19, 7)]),
    ("linear_3d", lambda x, w, b: F.linear(x, w, b), [(2, 3, 24), (33, 24), (33,)]),
    ("matmul_broadcast", lambda a, b: a @ b, [(2, 1, 5, 9), (3, 9, 7)]),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name, fn, shapes", FAMILY_CASES, ids=[c[0] for c in FAMILY_CASES])
def test_matmul_family_is_generated_forward_and_backward(name, fn, shapes, dtype):
    """baddbmm, addbmm, 3-d linear and broadcast matmul reach the template (bmm/mm, their
    alpha/beta scaling and bias the epilogue), nothing falls back, gradients match eager."""
    torch.manual_seed(0)
    inputs = [_randn(*s, dtype=dtype) for s in shapes]
    check(fn, *inputs, grad=True, atol=TOL[dtype] * 2, rtol=TOL[dtype] * 2, options=RIVOS, native=True)


def test_baddbmm_with_beta_zero_ignores_a_nan_input():
    nan = torch.full((2, 5, 7), float("nan"))
    fn = lambda c, a, b: torch.baddbmm(c, a, b, beta=0.0, alpha=2.0)  # noqa: E731
    out = check(fn, nan, torch.randn(2, 5, 19), torch.randn(2, 19, 7), atol=1e-4, rtol=1e-4, options=RIVOS, native=True)
    assert not out.isnan().any()


def _small_rivos(tmp_path) -> str:
    """rivos-sim shrunk so that a matmul the interpreter runs quickly has many waves of small
    tiles and operands larger than L2: 4 units, 8 KiB of local SRAM, 1 KiB of L2."""
    return profile_variant(tmp_path, "rivos-sim", "rivos-small", ("units = 64\n", "units = 4\n"),
                           ("local_sram_kib = 192 ", "local_sram_kib = 8 "), ("llc_mib = 64\n", "llc_mib = 0.001\n"))


def test_grouped_launch_order_from_the_l2_size(tmp_path):
    """Operands larger than L2: the launch groups tile rows (GROUP_M > 1, the plan says why) and
    every output tile is still computed once, as eager; operands that fit L2 keep row-major
    order (GROUP_M=1)."""
    torch.manual_seed(0)
    a, b = torch.randn(200, 16), torch.randn(16, 200)
    out, [kernel] = planned_kernels(torch.mm, (a, b), {"device": "rivos-sim"})
    assert kernel.matmul_tile.group_m == 1 and "fit L2" in str(kernel.matmul_tile)
    small = {"device": _small_rivos(tmp_path), "executor": "interpret"}
    out, [kernel] = planned_kernels(torch.mm, (a, b), small)
    tile = kernel.matmul_tile
    assert tile.group_m > 1 and f"GROUP_M={tile.group_m} (operands" in str(tile) and "in row order" in str(tile)
    torch.testing.assert_close(out, a @ b, atol=1e-4, rtol=1e-4)
    [(_, graph, _)] = compile_and_run(torch.mm, (a, b), {}, small)
    [rendered] = graph.rendered["triton"]
    assert rendered.constexprs["GROUP_M"] == tile.group_m and "in_group // group_rows" in rendered.source


def test_group_m_on_a_large_gemm_groups_about_a_wave():
    """8192³ bf16 on h100 (132 SMs, 50 MiB L2): a wave spans a few tile rows and columns,
    not one row panel of A and all of B."""
    from torch_hetero.planning.tiling import plan_matmul
    tile = plan_matmul(1, 8192, 8192, 8192, torch.bfloat16, get_profile("h100"))
    assert 4 <= tile.group_m <= 16, tile


# Few output tiles, long K: rivos-sim (64 units) splits K of these fp32 shapes (its vector FMAs
# are slow enough that idle units cost more than the partials); bf16 splits at 64 x 64 x 16384
SPLIT_CASES = [
    ("mm", torch.mm, [(20, 1024), (1024, 24)], torch.float32),
    ("addmm_scaled", lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=2.0), [(24,), (20, 1024), (1024, 24)],
     torch.float32),
    ("bmm", torch.bmm, [(2, 20, 1024), (2, 1024, 24)], torch.float32),
    ("mm_relu_epilogue", lambda a, b: (a @ b).relu(), [(20, 1024), (1024, 24)], torch.float32),
    ("mm_bf16", torch.mm, [(64, 16384), (16384, 64)], torch.bfloat16),
]


@pytest.mark.parametrize("name, fn, shapes, dtype", SPLIT_CASES, ids=[c[0] for c in SPLIT_CASES])
def test_split_k_matches_eager_under_the_interpreter(name, fn, shapes, dtype):
    """Each K slice's fp32 partial tile, added in slice order by the tile's last program, which
    then applies the bias, alpha/beta and the fused epilogue."""
    torch.manual_seed(0)
    inputs = [_randn(*s, dtype=dtype) for s in shapes]
    out, kernels = planned_kernels(fn, inputs, RIVOS)
    [kernel] = [k for k in kernels if k.matmul_tile is not None]
    assert kernel.matmul_tile.split_k > 1 and "split-K" in str(kernel.matmul_tile)
    torch.testing.assert_close(out, fn(*inputs), atol=TOL[dtype] * 4, rtol=TOL[dtype] * 4)


def test_split_k_source_and_backward():
    a, w = torch.randn(20, 1024), torch.randn(24, 1024)
    _, kernels = compiled_kernels(F.linear, (a, w), RIVOS)
    [kernel] = kernels
    assert kernel.constexprs["SPLIT_K"] > 1 and "tl.atomic_add" in kernel.source
    assert any("new_zeros" in line for line in kernel.launch())  # the arrival counters start at 0
    check(F.linear, a, w, grad=True, atol=1e-4, rtol=1e-4, options=RIVOS, native=True)


def test_split_k_is_the_device_models_decision():
    """Few output tiles and a long K split where they under-fill the units, more K slices on
    h100's 132 SMs than on mtia-v2's 64 PEs; a large square GEMM never splits; the split tile,
    its partials priced, is faster than the same tile unsplit."""
    from torch_hetero.planning.tiling import matmul_tile, plan_matmul
    h100, mtia = get_profile("h100"), get_profile("mtia-v2")
    tall = plan_matmul(1, 64, 64, 16384, torch.float32, h100), plan_matmul(1, 64, 64, 16384, torch.float32, mtia)
    assert tall[0].split_k > tall[1].split_k > 1, tall
    assert "64 units" in str(tall[1]) and "132 units" in str(tall[0])
    for profile in (h100, mtia):
        assert plan_matmul(1, 1024, 1024, 1024, torch.bfloat16, profile).split_k == 1
    tile = tall[0]
    unsplit = matmul_tile(tile.bm, tile.bn, tile.bk, tile.stages, 1, 64, 64, 16384, torch.float32, h100, splits=(1,))
    assert tile.seconds < unsplit.seconds and "fp32 partials" in str(tile) and unsplit.split_k == 1


@pytest.mark.parametrize("profile, library", [("h100", "cuBLAS"), ("mi300x", "rocBLAS\", \"hipBLASLt")])
def test_split_k_gemm_compiles_for_the_real_target(tmp_path, profile, library):
    """The split GEMM (partials, barrier, integer atomic, the last program's join) builds ahead
    of time for cuda:90 and hip:gfx942."""
    path = profile_variant(tmp_path, profile, f"{profile}-no-blas", (f'blas = ["{library}"]', "blas = []"))
    inputs = (torch.randn(64, 16384, dtype=torch.bfloat16), torch.randn(16384, 64, dtype=torch.bfloat16))
    [(_, graph, _)] = compile_and_run(torch.mm, inputs, {}, {"device": str(path)})
    [kernel] = graph.rendered["triton"]
    assert kernel.constexprs["SPLIT_K"] > 1
    [source] = [code for name, code in graph.code.items() if name.endswith(".triton.py")]
    shared = triton_run.compile_ahead(source, [kernel], get_profile(profile).triton_target)
    assert 0 < shared["kernel0"].shared_bytes and not shared["kernel0"].problems(get_profile(profile).local_sram_bytes)
