"""Lowerings whose behaviour depends on the target or on runtime metadata: special functions
(native on the host, libdevice-only on Triton targets) and ``as_strided`` over graph inputs."""

import math

import pytest
import torch
import torch.nn.functional as F

import torch_hetero
from torch_hetero.backend import collect_compiled_graphs
from torch_hetero.device_models import get_profile
from torch_hetero.runtime import triton_run
from utils import check, compile_hetero, compiled_kernels


def explain(fn, *args, device=None):
    torch._dynamo.reset()
    return torch_hetero.explain(fn, *args, device=device)


@pytest.mark.parametrize("fn", [
    pytest.param(lambda x: torch.special.bessel_j0(x) * 2, id="bessel_j0"),
    pytest.param(lambda x: torch.special.i0e(x) + torch.special.i1(x), id="i0e_i1"),
    pytest.param(lambda x: torch.digamma(x.abs() + 0.5) + torch.polygamma(2, x.abs() + 0.5), id="digamma_polygamma"),
    pytest.param(lambda x: torch.special.chebyshev_polynomial_t(x.tanh(), 3), id="chebyshev_t"),
    pytest.param(lambda x: torch.special.zeta(x.abs() + 1.5, 2.0), id="zeta"),
    pytest.param(lambda x: torch.erfinv(x.tanh() * 0.9), id="erfinv"),
])
def test_special_function_is_native_on_the_host(fn):
    x = torch.randn(64, 33)
    check(fn, x, atol=1e-5, rtol=1e-5, native=True)
    report = explain(fn, x, device="cpu")
    assert not report.fallbacks, report.fallbacks
    assert "#include <ATen/native/Math.h>" in "".join(report.code.values())


def test_special_functions_on_a_triton_target_use_libdevice_or_fall_back():
    """j0 is in libdevice: native.  digamma is not: the op runs through ATen and is reported
    (portability debt), and the result is still right."""
    x = torch.randn(8, 16).abs() + 0.5

    def fn(v):
        return torch.special.bessel_j0(v) + torch.digamma(v)
    report = explain(fn, x, device="h100")
    assert report.fallbacks == {"aten.digamma": 1}, report.fallbacks
    triton = next(src for name, src in report.code.items() if name.endswith(".triton.py"))
    assert "hmath.j0(" in triton
    check(fn, x, atol=1e-5, rtol=1e-5, options={"device": "h100", "executor": "interpret"})


def test_as_strided_of_an_input_is_relative_to_its_storage_offset():
    """trace decomposes into as_strided with the traced input's absolute storage offset; a later
    call with a view at another offset (same sizes, no recompile) must read its own elements.
    (A user-written as_strided with an absolute offset into a view called at another offset
    is not guarded by Dynamo: Inductor and we both read relative to the traced offset.)"""
    big = torch.randn(6, 5)
    torch._dynamo.reset()
    compiled = compile_hetero(lambda x: torch.trace(x) * 2, native=True)
    for view in (big[1:], big[:5]):
        torch.testing.assert_close(compiled(view), torch.trace(view) * 2)


@pytest.mark.parametrize("options", [{}, {"device": "h100", "executor": "interpret"}], ids=["host", "interpret"])
@pytest.mark.parametrize("fn,make_inputs", [
    pytest.param(lambda x: torch.round(x * 100, decimals=2) + torch.round(x * 1000, decimals=-2),
                 lambda: (torch.randn(5, 6),), id="round_decimals"),
    pytest.param(lambda x, y: torch.fmax(x, y) - torch.fmin(x, y),
                 lambda: (torch.tensor([1., float("nan"), 2., float("nan")]),
                          torch.tensor([float("nan"), 3., 1., float("nan")])), id="fmax_fmin_nan"),
    pytest.param(torch.signbit, lambda: (torch.tensor([-0.0, 0.0, -1., 2., float("nan"), -float("nan")]),),
                 id="signbit"),
    pytest.param(torch.ldexp, lambda: (torch.randn(5, 6), torch.randint(-3, 4, (5, 6))), id="ldexp"),
    pytest.param(torch.angle, lambda: (torch.tensor([-1.5, 0.0, -0.0, 2.0, float("nan")]),), id="angle"),
    pytest.param(lambda x: torch.flip(x, (0, 1)) * 2, lambda: (torch.randn(5, 6),), id="flip"),
    pytest.param(lambda x: torch.rot90(x, 1, (0, 1)), lambda: (torch.randn(5, 6),), id="rot90_output_view"),
    pytest.param(lambda x, s: torch.diagonal_scatter(x, s, -2), lambda: (torch.randn(5, 6), torch.randn(3)),
                 id="diagonal_scatter"),
    pytest.param(lambda x, w: torch.nn.functional.group_norm(x, 3, w), lambda: (torch.randn(2, 6, 5), torch.randn(6)),
                 id="group_norm_as_strided"),
    pytest.param(lambda x, y: (x >> 4, x << 3, x >> y, x << y),
                 lambda: (torch.randint(0, 256, (5, 6), dtype=torch.uint8), torch.randint(0, 8, (5, 6), dtype=torch.uint8)),
                 id="shift_operators_uint8"),
    pytest.param(lambda x: (x >> 3, x << 2), lambda: (torch.randint(-2**31, 2**31 - 1, (5, 6), dtype=torch.int32),),
                 id="shift_operators_int32"),
])
def test_composed_lowerings_are_native_and_match(fn, make_inputs, options):
    inputs = make_inputs()
    check(fn, *inputs, options=options, native=True)
    assert not explain(fn, *inputs, device=options.get("device", "cpu")).fallbacks


def _index(*values):
    return torch.tensor(values)


def _put_non_adjacent(x, i, j):
    y = x * 1
    y[i, :, j] = 7.0
    return y


@pytest.mark.parametrize("options", [{}, {"device": "h100", "executor": "interpret"}], ids=["host", "interpret"])
@pytest.mark.parametrize("fn,make_inputs,grad", [
    pytest.param(lambda x, i, v: torch.index_put(x, (i,), v), lambda: (torch.randn(5, 6), _index(0, 2, 4), torch.randn(3, 6)),
                 True, id="index_put"),
    pytest.param(lambda x, i, v: torch.index_put(x, (i,), v, accumulate=True) * 2,
                 lambda: (torch.randn(5, 6), _index(0, 2, 0, 4, 0), torch.randn(5, 6)), True, id="index_put_accumulate_repeats"),
    pytest.param(_put_non_adjacent, lambda: (torch.randn(4, 3, 5), _index(0, 2), _index(1, -1)), False,
                 id="index_put_non_adjacent"),
    pytest.param(lambda x: torch.index_put(x, (x[:, 0] > 0,), torch.arange(6.0)), lambda: (torch.randn(5, 6),),
                 False, id="bool_mask_broadcast_values"),
    pytest.param(lambda x, i, s: torch.scatter(x, 1, i, s), lambda: (torch.randn(3, 4), _index([0, 3], [2, 1], [1, 0]),
                                                                      torch.randn(3, 2)), True, id="scatter"),
    pytest.param(lambda x, i, s: torch.scatter_add(x, 0, i, s), lambda: (torch.randn(5, 6), torch.randint(0, 5, (7, 6)),
                                                                          torch.randn(7, 6)), True, id="scatter_add"),
    # one element per slice: elementwise selects (scatter._select_per_slice)
    pytest.param(lambda x, i, s: torch.scatter(x, 1, i, s) * 2, lambda: (torch.randn(3, 4), _index([2], [0], [3]),
                                                                          torch.randn(3, 1)), True, id="scatter_one_per_row"),
    pytest.param(lambda x, i: torch.scatter(x, 0, i, 2.5), lambda: (torch.randn(5, 6), torch.randint(0, 5, (1, 6))),
                 True, id="scatter_value_one_per_column"),
    pytest.param(lambda x, i, s: torch.scatter_add(x, 1, i, s), lambda: (torch.randn(5, 6), torch.randint(0, 6, (5, 1)),
                                                                          torch.randn(5, 1)), True, id="scatter_add_one_per_row"),
    pytest.param(lambda x, i, s: torch.scatter_reduce(x, 0, i, s, "amax", include_self=False),
                 lambda: (torch.randn(5, 6), torch.randint(0, 5, (7, 6)), torch.randn(7, 6)), False, id="scatter_amax_no_self"),
    pytest.param(lambda x, i, s: torch.scatter_reduce(x, 0, i, s, "mean"),
                 lambda: (torch.randint(-9, 9, (5, 6)), torch.randint(0, 5, (7, 6)), torch.randint(-9, 9, (7, 6))), False,
                 id="scatter_mean_int"),
    pytest.param(lambda x, i, s: x.index_add(0, i, s, alpha=2).to(torch.float32),
                 lambda: (torch.randn(5, 6).bfloat16(), _index(1, 1, 3), torch.randn(3, 6).bfloat16()), False,
                 id="index_add_bf16"),
    pytest.param(lambda w, i: torch.nn.functional.embedding(i, w).pow(2).sum(),
                 lambda: (torch.randn(10, 4), _index([1, 2, 1], [9, 1, 0])), True, id="embedding_backward"),
])
def test_scatter_lowerings_are_native_and_match(fn, make_inputs, grad, options):
    inputs = make_inputs()
    # no portable 16-bit atomics on Triton targets: the accumulating scatter falls back there
    sixteen_bit = any(x.dtype == torch.bfloat16 for x in inputs)
    check(fn, *inputs, grad=grad, atol=1e-5, rtol=1e-5, options=options, native=not (sixteen_bit and options))
    fallbacks = explain(fn, *inputs, device=options.get("device", "cpu")).fallbacks
    assert fallbacks == ({"aten.index_put": 1} if sixteen_bit and options else {}), fallbacks


def test_scatter_prod_has_no_triton_kernel():
    """Triton has no atomic multiply: on a Triton target a scatter-prod is portability debt."""
    def fn(x, i, s):
        return torch.scatter_reduce(x, 0, i, s, "prod")
    inputs = (torch.randn(5, 6), torch.randint(0, 5, (7, 6)), torch.randn(7, 6))
    assert explain(fn, *inputs, device="h100").fallbacks == {"aten.scatter_reduce": 1}
    assert not explain(fn, *inputs, device="cpu").fallbacks


@pytest.mark.parametrize("options", [{}, {"device": "h100", "executor": "interpret"}], ids=["host", "interpret"])
@pytest.mark.parametrize("fn,shape", [
    pytest.param(lambda x: torch.nn.functional.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
                 (2, 3, 7, 6), id="avg_pool2d_ceil_no_pad_count"),
    pytest.param(lambda x: torch.nn.functional.avg_pool3d(x, (2, 3, 2), 1, (1, 1, 0), divisor_override=5),
                 (1, 2, 4, 5, 3), id="avg_pool3d_divisor"),
    pytest.param(lambda x: torch.nn.functional.avg_pool1d(x, 4, 3, 2), (2, 3, 11), id="avg_pool1d"),
    # windows past the unrolled limit loop as a reduction (EfficientNet's head: AvgPool2d(640))
    pytest.param(lambda x: torch.nn.functional.avg_pool2d(x.relu() * 2, 640, ceil_mode=True), (2, 5, 3, 4),
                 id="avg_pool2d_global_ceil"),
    pytest.param(lambda x: torch.nn.functional.avg_pool2d(x, 6, 4, 2, ceil_mode=True, count_include_pad=False),
                 (2, 3, 13, 11), id="avg_pool2d_large_padded"),
    # overlapping windows larger than the input (VGG's 7x7 head on a small image), and uneven ones
    pytest.param(lambda x: torch.nn.functional.adaptive_avg_pool2d(x, 7), (2, 3, 2, 3), id="adaptive_avg_pool2d_up"),
    pytest.param(lambda x: torch.nn.functional.adaptive_avg_pool2d(x, (3, 5)), (2, 3, 10, 7),
                 id="adaptive_avg_pool2d_uneven"),
])
def test_average_pooling_is_native_with_gradients(fn, shape, options):
    x = torch.randn(shape)
    check(fn, x, grad=True, atol=1e-5, rtol=1e-5, options=options, native=True)
    assert not explain(fn, x, device=options.get("device", "cpu")).fallbacks


def _weight_normed(dim):
    torch.manual_seed(0)
    layer = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 6, 3), dim=dim)
    return lambda x: layer(x)


@pytest.mark.parametrize("options", [{}, {"device": "h100", "executor": "interpret"}], ids=["host", "interpret"])
@pytest.mark.parametrize("fn,make_inputs", [
    pytest.param(_weight_normed(0), lambda: (torch.randn(2, 4, 9),), id="weight_norm_dim0"),   # wav2vec2's
    pytest.param(_weight_normed(2), lambda: (torch.randn(2, 4, 9),), id="weight_norm_dim2"),
    pytest.param(lambda x, s: torch.as_strided_scatter(x * 2, s, (2, 3), (6, 2), 1) * 3,
                 lambda: (torch.randn(4, 6), torch.randn(2, 3)), id="as_strided_scatter"),
])
def test_decompositions_are_native_with_gradients(fn, make_inputs, options):
    inputs = make_inputs()
    check(fn, *inputs, grad=True, atol=1e-5, rtol=1e-5, options=options, native=True)
    assert not explain(fn, *inputs, device=options.get("device", "cpu")).fallbacks


def _pooling_input(shape):
    """Ties, NaN and an all -inf window: ATen's index rules (first maximum, last NaN, the
    window's first element) are what a backward pass scatters through."""
    x = torch.randn(shape)
    x[0, 0, :3, :3] = float("-inf")
    x[0, 0, 4, 4:6] = x[0, 0, 5, 4:6] = 0.5
    x[-1, -1, 1, 1] = float("nan")
    return x


@pytest.mark.parametrize("options", [{}, {"device": "h100", "executor": "interpret"}], ids=["host", "interpret"])
@pytest.mark.parametrize("args", [(3, 2, 1, 1, False), (3, 2, 1, 1, True), ((2, 3), (1, 2), (1, 0), (2, 1), False)],
                         ids=["3x3_s2_pad", "ceil", "dilated"])
def test_max_pooling_matches_eager_values_and_indices(args, options):
    x = _pooling_input((2, 3, 9, 11))
    fn = lambda v: torch.nn.functional.max_pool2d_with_indices(v * 2, *args)  # noqa: E731
    torch._dynamo.reset()
    (values, indices), (expected_values, expected_indices) = \
        compile_hetero(fn, options=options, native=True)(x), fn(x)
    assert torch.equal(values.nan_to_num(), expected_values.nan_to_num()) and torch.equal(indices, expected_indices)
    assert not explain(fn, x, device=options.get("device", "cpu")).fallbacks


def test_max_pooling_past_the_unrolled_window_falls_back_and_says_why():
    fn = lambda v: torch.nn.functional.max_pool2d(v * 2, 6)  # noqa: E731
    x = torch.randn(2, 3, 12, 12)
    check(fn, x)
    assert explain(fn, x).fallbacks == {"aten.max_pool2d_with_indices": 1}
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match="a 6x6 window is past the 25 elements unrolled"):
        check(fn, x, native=True)


def test_average_pooling_backward_past_the_unrolled_windows_falls_back_and_says_why():
    """Stride 1 under a 6x6 window: 36 windows cover each input element; the forward loops, the
    backward runs ATen's kernel."""
    fn = lambda v: torch.nn.functional.avg_pool2d(v * 2, 6, 1)  # noqa: E731
    x = torch.randn(2, 3, 12, 12)
    check(fn, x, grad=True)
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match="6x6 windows cover each element, past the 25"):
        check(fn, x, grad=True, native=True)


def test_max_pooling_reads_a_computed_input_once_and_skips_unused_indices():
    """Inference (ResNet's stem): batch norm and relu are computed once into memory, not
    recomputed for each of the 9 overlapping windows that read an element; then the -inf
    frame and the windows; no index output."""
    fn = lambda v: torch.nn.functional.max_pool2d((v * 3 - 1).relu(), 3, 2, 1)  # noqa: E731
    x = torch.randn(2, 4, 16, 16)
    check(fn, x, grad=True, native=True)
    _, kernels = compiled_kernels(fn, (x,), {})
    assert len(kernels) == 3 and all("int64_t*" not in k.source for k in kernels), [k.source for k in kernels]
    assert sum("aten.relu" in k.origins for k in kernels) == 1, [k.origins for k in kernels]


def test_max_pooling_for_training_scans_each_window_once():
    """Training saves the indices: the forward computes them and gathers the values at them,
    instead of a second kernel scanning every window for the values."""
    fn = lambda v: torch.nn.functional.max_pool2d((v * 3 - 1).relu(), 3, 2, 1).sum()  # noqa: E731
    x = _pooling_input((2, 4, 16, 16)).requires_grad_()
    check(fn, x, grad=True, native=True)
    torch._dynamo.reset()
    with collect_compiled_graphs() as graphs:
        torch.compile(fn, backend="hetero")(x).backward()
    [forward] = [g for kind, g, _ in graphs if kind == "forward"]
    pooling = [(p, k) for p, k in zip(forward.plan.kernels, forward.kernels)
               if "aten.max_pool2d_with_indices" in k.origins]
    scans = [k for p, k in pooling if len(p.group.stored) == 2]     # the other: the input in a -inf frame
    assert len(pooling) == 2 and len(scans) == 1, [k.source for k in forward.kernels]
    assert "hetero_max<float>" not in scans[0].source, scans[0].source  # no second scan for the maximum


@pytest.mark.parametrize("options", [{}, {"device": "h100", "executor": "interpret"},
                                     {"device": "mtia-v2", "executor": "interpret"}], ids=["host", "h100", "mtia"])
@pytest.mark.parametrize("fn,make_inputs,atol", [
    pytest.param(lambda x: torch.cumsum(x, -1) * 2, lambda: (torch.randn(5, 70),), 1e-4, id="cumsum_last"),
    pytest.param(lambda x: torch.cumprod(x, 1), lambda: (torch.randn(3, 6, 4),), 1e-4, id="cumprod_middle"),
    pytest.param(lambda x: torch.cumsum(x, 0), lambda: (torch.randint(-5, 5, (9,)),), 1e-4, id="cumsum_int"),
    pytest.param(lambda x: torch.cumsum(x, 1, dtype=torch.float32), lambda: (torch.randn(4, 33).bfloat16(),), 1e-4,
                 id="cumsum_bf16_to_f32"),
    # a block scan adds in another order than eager's serial loop: over 5000 elements the
    # rounding differs by up to ~sqrt(n) ulps of the running sum (~70), a few 1e-4
    pytest.param(lambda x: torch.cumsum(x, 1), lambda: (torch.randn(2, 5000),), 1e-3, id="cumsum_long_rows"),
])
def test_scans_are_native_with_gradients(fn, make_inputs, atol, options):
    inputs = make_inputs()
    grad = inputs[0].dtype == torch.float32
    check(fn, *inputs, grad=grad, atol=atol, rtol=1e-4, options=options, native=True)
    assert not explain(fn, *inputs, device=options.get("device", "cpu")).fallbacks


@pytest.mark.parametrize("profile", ["h100", "mi300x"])
def test_new_kernel_kinds_compile_ahead_for_real_targets(profile):
    """Scans (associative_scan), scatters (atomics), libdevice special functions and pooling
    windows build for the profile's GPU target without a GPU."""
    def fn(x, i, s):
        y = torch.cumprod(x, 1) + torch.special.bessel_j0(x)
        z = torch.scatter_add(x, 0, i, s) + torch.nn.functional.avg_pool1d(x[None], 3, 2, 1, ceil_mode=True)[0].sum()
        return torch.cumsum(y, 0), z
    inputs = (torch.randn(6, 40), torch.randint(0, 6, (4, 40)), torch.randn(4, 40))
    _, kernels = compiled_kernels(fn, inputs, {"device": profile})
    with torch.no_grad():
        source = explain(fn, *inputs, device=profile).code["inference.triton.py"]
    shared = triton_run.compile_ahead(source, kernels, get_profile(profile).triton_target)
    assert set(shared) == {k.name for k in kernels} and len(shared) >= 4


NAN = float("nan")


@pytest.mark.parametrize("fn,make_inputs,grad", [
    pytest.param(lambda x: torch.sort(x, 0, descending=True), lambda: (torch.randn(6, 3, 4),), True, id="sort_dim0_desc"),
    pytest.param(lambda x: torch.sort(x.t(), -1)[0] * torch.arange(3.0), lambda: (torch.randn(3, 5),), True,
                 id="sort_transposed_input"),
    pytest.param(lambda x: torch.sort(x, stable=True), lambda: (torch.tensor([3., NAN, 1., 3., -NAN, 0., 1.]),),
                 False, id="stable_sort_nan_and_ties"),
    pytest.param(lambda x: torch.sort(x, stable=True, descending=True),
                 lambda: (torch.tensor([3., NAN, 1., 3., -NAN, 0., 1.]),), False, id="stable_sort_descending_nan"),
    pytest.param(lambda x: torch.argsort(x, dim=1, stable=True), lambda: (torch.randint(0, 4, (3, 10)),), False,
                 id="argsort_int_ties"),
    pytest.param(lambda x: torch.topk(x, 3, 1), lambda: (torch.randn(4, 9),), True, id="topk"),
    pytest.param(lambda x: torch.kthvalue(x, 2, 1, keepdim=True), lambda: (torch.randn(4, 9),), True, id="kthvalue"),
    pytest.param(lambda x: (torch.median(x, 1), torch.nanmedian(x, 1), torch.median(x), torch.nanmedian(x)),
                 lambda: (torch.tensor([[3., NAN, 1., NAN, 2.], [1., 2., 3., 4., 5.], [NAN] * 5]),), False,
                 id="median_nanmedian_with_nans"),
    pytest.param(lambda x: torch.quantile(x, 0.3, dim=0), lambda: (torch.randn(3, 5),), True, id="quantile_grad"),
])
def test_sorting_is_native_on_the_host(fn, make_inputs, grad):
    inputs = make_inputs()
    check(fn, *inputs, grad=grad, native=True)
    assert not explain(fn, *inputs).fallbacks


INF = float("inf")


@pytest.mark.parametrize("fn,make_inputs,grad,options", [
    pytest.param(lambda x: torch.logcumsumexp(x, 1), lambda: (torch.randn(4, 70) * 10,), True, {}, id="logcumsumexp"),
    pytest.param(lambda x: torch.logcumsumexp(x, 1), lambda: (torch.randn(4, 70) * 10,), True,
                 {"device": "h100", "executor": "interpret"}, id="logcumsumexp_triton"),
    pytest.param(lambda x: torch.logcumsumexp(x, 0), lambda: (torch.tensor([-INF, -INF, 1., INF, 2., INF]),), False,
                 {}, id="logcumsumexp_infinities"),
    pytest.param(lambda x: torch.cummax(x, 1),
                 lambda: (torch.tensor([[1., 3., 3., NAN, 2., NAN, 5.], [2., 2., 1., 4., 4., 0., 0.]]),), False, {},
                 id="cummax_nan_and_ties"),
    pytest.param(lambda x: torch.cummin(x, 0), lambda: (torch.randint(0, 3, (7, 3)),), False, {}, id="cummin_int"),
    pytest.param(lambda x: torch.cummax(x, 0)[0] * 2, lambda: (torch.randn(6, 4),), True, {}, id="cummax_grad"),
])
def test_running_reductions_are_native(fn, make_inputs, grad, options):
    inputs = make_inputs()
    check(fn, *inputs, grad=grad, atol=1e-4, rtol=1e-4, options=options, native=True)
    assert not explain(fn, *inputs, device=options.get("device", "cpu")).fallbacks


def test_host_scans_accumulate_in_double_like_aten():
    """A long float32 cumsum equals eager's bit for bit (ATen's CPU scan accumulates in double)."""
    x = torch.randn(3, 100_000)
    torch._dynamo.reset()
    assert torch.equal(torch.compile(lambda v: torch.cumsum(v, 1), backend="hetero")(x), torch.cumsum(x, 1))


def test_host_erf_is_accurate_over_its_range():
    """The prelude's inline erf (not libm's): relative error against float64 over [-10, 10] and
    down to the smallest inputs (where the result is a normal float), and the special values."""
    x = torch.cat([torch.linspace(-10, 10, 200001), torch.logspace(-44, 0, 2001),
                   torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0])])
    out = torch.compile(torch.erf, backend="hetero", options={"device": "cpu"})(x)
    expected = torch.erf(x.double())
    finite = expected.isfinite() & (expected.abs() > torch.finfo(torch.float32).tiny)  # normal results
    relative = ((out.double() - expected).abs() / expected.abs())[finite]
    assert relative.max() < 4e-7, relative.max()
    assert out[-5].isnan() and out[-4:].tolist() == [1.0, -1.0, 0.0, -0.0]
    assert math.copysign(1, out[-1].item()) == -1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_host_clamps_against_constants_propagate_nan_in_one_compare(dtype):
    """ReLU, ReLU6, clamp and maximum with a constant: NaN, infinities and signed zeros as in
    eager, each bound one select (a vector max/min) where the bound is an ordered constant;
    ``hetero_max`` stays where both operands vary."""
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, -3.0, 2.5, 7.0] * 4, dtype=dtype)
    y = torch.tensor([1.0, float("nan"), 0.5, -1.0] * 8, dtype=dtype)

    def fn(v, w):
        return (F.relu(v), F.relu6(v), v.clamp(-1.0, float("inf")), v.clamp_max(2.0),
                torch.maximum(v, w), torch.minimum(v, w))
    out, kernels = compiled_kernels(fn, (x, y), {"device": "cpu"})
    for got, want in zip(out, fn(x, y)):
        torch.testing.assert_close(got, want, equal_nan=True, rtol=0, atol=0)
    sources = "\n".join(k.source for k in kernels)
    assert "0.0f > " in sources and "6.0f < " in sources and "-1.0f > " in sources
    assert "hetero_max<float>" in sources and "hetero_min<float>" in sources


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int32])
def test_host_max_min_reductions_are_vectorized_and_propagate_nan(dtype):
    """amax/amin (and softmax's max) run as OpenMP max/min reductions (vectorized) with a NaN
    flag: a NaN anywhere in a row makes that row's result NaN, as in eager; rows of -inf/+inf
    stay so.  max(dim).values alone does not compute the unread indices."""
    if dtype.is_floating_point:
        x = torch.randn(6, 1000).to(dtype)
        x[1, 517] = float("nan")
        x[2, 0] = float("nan")
        x[3] = -float("inf")
        x[4] = float("inf")
    else:
        x = torch.randint(-1000, 1000, (6, 1000), dtype=dtype)

    def fn(v):
        return v.amax(1), v.amin(1), v.max(0).values, v.float().softmax(1)
    out, kernels = compiled_kernels(fn, (x,), {"device": "cpu"})
    for got, want in zip(out, fn(x)):
        torch.testing.assert_close(got, want, equal_nan=True)
    sources = "\n".join(k.source for k in kernels)
    assert sources.count("reduction(max:") == 2 and "reduction(min:" in sources
    assert "_index" not in sources


def test_host_gelu_and_its_gradient_are_accurate_over_their_range():
    """The prelude's GELU and GELU derivative (one Gaussian for the normal CDF and density)
    against float64: relative error over [-13, 13] (the gradient: absolute near its zero at
    -0.75), the special values, and the tanh form's gradient from the same lowering."""
    x = torch.cat([torch.linspace(-13, 13, 260001), torch.tensor([0.0, -0.0, float("nan"), float("inf")])])
    x.requires_grad_()
    torch._dynamo.reset()
    out = compile_hetero(F.gelu, options={"device": "cpu"}, native=True)(x)
    out.backward(torch.ones_like(out))
    exact = x.detach().double()
    cdf = 0.5 * torch.special.erfc(-exact / math.sqrt(2))
    expected, expected_grad = exact * cdf, cdf + exact * torch.exp(-exact * exact / 2) / math.sqrt(2 * math.pi)
    finite = expected.isfinite() & (expected.abs() > torch.finfo(torch.float32).tiny)
    assert ((out.detach().double() - expected).abs() / expected.abs())[finite].max() < 8e-7
    grad_error = (x.grad.double() - expected_grad).abs() / expected_grad.abs().clamp(min=0.25)
    assert grad_error[:-4].max() < 8e-7, grad_error[:-4].max()
    assert out[-4:-2].tolist() == [0.0, -0.0] and out[-2].isnan() and out[-1].item() == float("inf")
    y = torch.randn(1000, requires_grad=True)
    check(lambda v: F.gelu(v, approximate="tanh"), y, grad=True, native=True)
