"""8-bit floats (e4m3fn, e5m2 and AMD's fnuz variants) are generated on the host and in Triton:
casts match eager byte for byte over every exponent and the rounding boundaries of every
mantissa (ties, saturation, NaN, infinities, -0, subnormals), decoding matches on all 256
bytes, and a dynamically scaled quantization compiles with no fallback."""
import pytest
import torch

import torch_hetero
from torch_hetero.device_models import get_profile
from torch_hetero.dtypes import FLOAT8
from torch_hetero.runtime import triton_run
from utils import check, compiled_kernels

FORMATS = list(FLOAT8)
HOST = {"device": "cpu"}
INTERPRET = {"device": "h100", "executor": "interpret"}
TARGETS = [pytest.param(HOST, id="cpu"), pytest.param(INTERPRET, id="h100")]


def boundary_floats() -> torch.Tensor:
    """Every value of the top 16 bits (sign, exponent, and the mantissa bits fp8 keeps and
    the first ones it rounds away), each with the low 16 bits clear (an exact tie where the
    rounded-away bits are 100…), set just above or below half, or full; plus infinities, NaNs,
    zeros and the fp32 subnormals' edges: 393,224 floats."""
    high = torch.arange(1 << 16, dtype=torch.int64) << 16
    lows = [0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF]
    bits = (high[:, None] | torch.tensor(lows)[None, :]).flatten()
    specials = torch.tensor([0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x00000001, 0x807FFFFF,
                             0x80000000, 0x00000000], dtype=torch.int64)
    return torch.cat([bits, specials]).to(torch.int32).view(torch.float32)


@pytest.mark.parametrize("options", TARGETS)
@pytest.mark.parametrize("dtype", FORMATS, ids=str)
def test_casts_to_float8_match_eager_byte_for_byte(dtype, options):
    x = boundary_floats()
    if options is INTERPRET:
        x = x[::7]  # the interpreter is numpy: every 7th pattern still covers each exponent
    out = torch.compile(lambda t: t.to(dtype), backend="hetero", options=options)(x)
    mismatched = (out.view(torch.uint8) != x.to(dtype).view(torch.uint8)).nonzero().flatten()
    assert mismatched.numel() == 0, (x[mismatched[:5]], out.view(torch.uint8)[mismatched[:5]])
    torch._dynamo.reset()


@pytest.mark.parametrize("options", TARGETS)
@pytest.mark.parametrize("dtype", FORMATS, ids=str)
def test_every_float8_byte_decodes_as_eager(dtype, options):
    codes = torch.arange(256, dtype=torch.uint8).view(dtype)
    out = check(lambda c: (c.to(torch.float32), c.to(torch.bfloat16), c.to(torch.float16) * 2), codes,
                atol=0, rtol=0, options=options)
    expected = codes.to(torch.float32)
    finite = ~expected.isnan()
    assert torch.equal(out[0][finite].signbit(), expected[finite].signbit())   # -0 stays -0
    assert torch.equal(out[0].isnan(), expected.isnan())


def test_float8_formats_know_their_extremes():
    """The layouts' largest finite value and NaN/inf bytes, against torch's own finfo."""
    for dtype, fmt in FLOAT8.items():
        largest = torch.tensor([fmt.max_code], dtype=torch.uint8).view(dtype).float().item()
        assert largest == torch.finfo(dtype).max
        assert torch.tensor([fmt.nan_code], dtype=torch.uint8).view(dtype).float().isnan().item()
        assert (fmt.inf_code >= 0) == (dtype == torch.float8_e5m2)


def quantize_dynamic(x, dtype):
    """Per-row dynamic scaling (torchao's float8 recipe written in plain torch): the row's
    amax sets the scale, the scaled values are clamped to the format's range and cast."""
    largest = torch.finfo(dtype).max
    amax = x.abs().amax(dim=-1, keepdim=True).float()
    scale = largest / amax.clamp(min=1e-12)
    q = (x * scale).clamp(-largest, largest).to(dtype)
    return q, scale, q.to(torch.float32) / scale


@pytest.mark.parametrize("options", TARGETS)
@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2fnuz], ids=str)
def test_dynamic_row_scaling_compiles_with_no_fallback(dtype, options):
    torch.manual_seed(0)
    x = torch.randn(48, 96) * torch.logspace(-4, 4, 96)
    x[3] = 0        # an all-zero row: the clamped amax keeps the scale finite
    x[5, 7] = -0.0
    check(quantize_dynamic, x, dtype, atol=0, rtol=0, options=options, native=True)


@pytest.mark.parametrize("options", TARGETS)
def test_a_float8_weight_upcast_fuses_into_its_neighbours(options):
    """The weight's cast is generated; the matmul stays ATen's, the rest one kernel."""
    torch.manual_seed(0)
    w8 = torch.randn(16, 16).to(torch.float8_e4m3fn)

    def fn(x):
        return torch.relu(x @ w8.to(torch.float32) + 1)
    check(fn, torch.randn(4, 16), grad=True, options=options, native=True)


@pytest.mark.parametrize("options", TARGETS)
def test_float8_outputs_and_inputs_pass_through_strided(options):
    torch.manual_seed(0)
    x = torch.randn(8, 12)
    check(lambda t: (t.t().to(torch.float8_e5m2), t.to(torch.float8_e4m3fn)[:, ::2]), x, atol=0, rtol=0,
          options=options, native=True)
    q = x.to(torch.float8_e4m3fn)
    check(lambda q: q.t().to(torch.float16) * 2, q, atol=0, rtol=0, options=options, native=True)


def test_the_generated_cast_is_one_conversion_in_a_vector_loop_on_the_host():
    """The conversions are branch-free integer arithmetic, so the loop stays a simd loop, and
    a store of a cast narrows the value once (not rounded, widened and narrowed again)."""
    _, (kernel,) = compiled_kernels(lambda t: (t * 2).to(torch.float8_e4m3fn), (torch.randn(64, 256),), HOST,
                                    native=True)
    loop = kernel.source[kernel.source.index("#pragma omp simd"):]
    assert "= hetero_f2fp8<3, 7, 126, 126, 127, 1>(tmp1);" in loop, kernel.source


@pytest.mark.parametrize("device, dtype", [("h100", torch.float8_e4m3fn), ("mi300x", torch.float8_e4m3fnuz),
                                           ("a100", torch.float8_e5m2)])
def test_float8_kernels_build_for_the_real_targets(device, dtype):
    """Triton compiles the byte conversions ahead of time for each GPU's architecture."""
    x = torch.randn(8, 64)
    graphs = []
    with torch_hetero.backend.collect_compiled_graphs() as graphs:
        torch.compile(lambda t: quantize_dynamic(t, dtype), backend="hetero",
                      options={"device": device, "executor": "interpret", "strict": True})(x)
    (_, graph, _), = graphs
    kernels = graph.rendered["triton"]
    resources = triton_run.compile_ahead(graph.code["inference.triton.py"], kernels,
                                         get_profile(device).triton_target)
    assert set(resources) == {k.name for k in kernels} and all(r.spill_bytes == 0 for r in resources.values())
    torch._dynamo.reset()


def scaled_mm_inputs(encoding, rowwise: bool, m=48, n=80, k=96):
    """fp8 operands as a quantizing recipe makes them (B column-major, as ``_scaled_mm`` needs),
    with tensor-wise or row-wise (A's rows, B's columns) scales."""
    torch.manual_seed(0)
    a = (torch.randn(m, k) * 4).to(encoding)
    b = (torch.randn(n, k) * 4).to(encoding).t()
    scales = (torch.rand(m, 1) + 0.5, torch.rand(1, n) + 0.5) if rowwise else (torch.tensor(0.75), torch.tensor(1.5))
    return a, b, *scales


def scaled_linear(out_dtype, with_bias: bool):
    def fn(a, b, scale_a, scale_b, bias):
        out = torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, bias=bias if with_bias else None,
                               out_dtype=out_dtype)
        return torch.nn.functional.silu(out.float()) if out_dtype != torch.float8_e4m3fn else out.float()
    return fn


# (profile, its encoding): native fp8 (h100, mi300x's fnuz), dtype debt (a100), the host's library
SCALED_TARGETS = [pytest.param("h100", torch.float8_e4m3fn, id="h100"),
                  pytest.param("h100", torch.float8_e5m2, id="h100-e5m2"),
                  pytest.param("mi300x", torch.float8_e4m3fnuz, id="mi300x"),
                  pytest.param("a100", torch.float8_e4m3fn, id="a100"),
                  pytest.param("cpu", torch.float8_e4m3fn, id="cpu")]


@pytest.mark.parametrize("device, encoding", SCALED_TARGETS)
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float32, torch.float8_e4m3fn], ids=str)
@pytest.mark.parametrize("rowwise", [False, True], ids=["tensorwise", "rowwise"])
def test_scaled_mm_matches_eager_with_no_fallback(device, encoding, out_dtype, rowwise):
    """Within a matmul's tolerance (eager's CPU kernel scales the operands, GPUs the
    accumulator: the two differ by an ulp of the output format)."""
    a, b, scale_a, scale_b = scaled_mm_inputs(encoding, rowwise)
    bias = torch.randn(80).to(torch.bfloat16) if out_dtype == torch.bfloat16 else None
    options = {"device": device} if device == "cpu" else {"device": device, "executor": "interpret"}
    tol = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float8_e4m3fn: 0.13}[out_dtype]
    check(scaled_linear(out_dtype, bias is not None), a, b, scale_a, scale_b, bias, atol=tol * 50, rtol=tol,
          options=options, native=True)


@pytest.mark.parametrize("device, operand, says", [
    ("h100", "_fp8_operand(tl.load(arg0", "fp8 operands into the matrix units"),
    ("mi300x", "_fp8_operand(tl.load(arg0", "fp8 operands into the matrix units"),
    ("a100", "a = _to_bf16(", "dtype debt, a100's matrix units take no float8_e4m3fn: the operands run as "
                                    "bfloat16")])
def test_scaled_mm_feeds_fp8_to_matrix_units_that_take_it_and_reports_the_debt_elsewhere(device, operand, says):
    encoding = torch.float8_e4m3fnuz if device == "mi300x" else torch.float8_e4m3fn
    inputs = scaled_mm_inputs(encoding, rowwise=True)
    _, (kernel,) = compiled_kernels(lambda *t: scaled_linear(torch.bfloat16, False)(*t, None), inputs,
                                    {"device": device, "executor": "interpret"}, native=True)
    assert operand in kernel.source and "acc += _dot(a, b, False)" in kernel.source, kernel.source
    report = torch_hetero.explain(lambda *t: scaled_linear(torch.bfloat16, False)(*t, None), *inputs, device=device)
    assert any(says in line for line in report.schedule.splitlines()), report.schedule


def test_scaled_mm_on_h100_is_a_wgmma_of_e4m3_in_k32_steps():
    """Built ahead of time for sm_90: the fp8 operands reach Hopper's fp8 warpgroup MMA, whose
    K step is 32 (the profile's fp8 instruction shape), and the tile's BK is a multiple of it."""
    import re
    inputs = scaled_mm_inputs(torch.float8_e4m3fn, rowwise=True, m=256, n=384, k=512)
    with torch_hetero.backend.collect_compiled_graphs() as graphs:
        torch.compile(lambda *t: scaled_linear(torch.bfloat16, False)(*t, None), backend="hetero",
                      options={"device": "h100", "executor": "interpret", "strict": True})(*inputs)
    (_, graph, _), = graphs
    kernel, = graph.rendered["triton"]
    module = triton_run.load_module(graph.code["inference.triton.py"], interpret=False)
    built = triton_run.aot_compile(getattr(module, kernel.name), kernel.signature, kernel.constexprs, "cuda:90",
                                   kernel.launch_options)
    assert set(re.findall(r"wgmma\.mma_async\.sync\.aligned\.m64n\d+k(\d+)\.f32\.(\w+)\.(\w+)", built.asm["ptx"])) \
        == {("32", "e4m3", "e4m3")}
    assert kernel.constexprs["BK"] % 32 == 0
    torch._dynamo.reset()


def test_the_report_lists_fp8_matmuls_a_device_lacks_the_units_for_as_dtype_debt():
    inputs = scaled_mm_inputs(torch.float8_e4m3fn, rowwise=False, m=256, n=512, k=1024)
    class Quantized(torch.nn.Module):
        def forward(self, a, b, scale_a, scale_b):
            return torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16).relu()
    reports = torch_hetero.explain(Quantized(), *inputs, device=["h100", "a100", "cpu"])
    assert reports["h100"].dtype_debt == []
    (a100,), (cpu,) = reports["a100"].dtype_debt, reports["cpu"].dtype_debt
    assert (a100.op, a100.wanted, a100.runs_as) == ("aten._scaled_mm", "float8_e4m3fn", "bfloat16")
    assert (cpu.wanted, cpu.runs_as) == ("float8_e4m3fn", "float32")
    # 2*256*512*1024 FLOPs at half a100's 312 TFLOP/s bf16 rate
    assert a100.lost_us == pytest.approx(2 * 256 * 512 * 1024 / (2 * 312e12) * 1e6, rel=1e-3)
    assert "float8_e4m3fn as bfloat16" in str(reports["a100"])


def test_scaled_mm_with_dynamic_rows():
    """One compile serves every batch size: the rows, the row-wise scales and the grid are symbolic."""
    for m in (48, 33):
        check(lambda *t: scaled_linear(torch.bfloat16, False)(*t, None), *scaled_mm_inputs(torch.float8_e4m3fn, True, m=m),
              dynamic=True, atol=1e-2, rtol=1e-2, options={"device": "h100", "executor": "interpret"}, native=True)


@pytest.mark.parametrize("options", TARGETS)
def test_weights_kept_as_bytes_are_read_through_dtype_views(options):
    """A quantized weight stored as uint8 and viewed as fp8 or int8 (``aten.view.dtype``, the
    same size): read in the new dtype where it is used, returned as a view, with no copy."""
    torch.manual_seed(0)
    w_bytes = torch.randn(96, 128).to(torch.float8_e4m3fn).view(torch.uint8)
    a = (torch.randn(64, 128) * 3).to(torch.float8_e4m3fn)

    def fp8_matmul(a, wb):
        return torch._scaled_mm(a, wb.view(torch.float8_e4m3fn).t(), scale_a=torch.tensor(0.5),
                                scale_b=torch.tensor(2.0), out_dtype=torch.float32).relu()

    def int8_reads(x, wb):  # one kernel reading the same buffer as int8 and (its column) again
        return x @ wb.view(torch.int8).t().float() + wb.view(torch.int8)[:, 0].float() + wb[:, 1].float()

    check(fp8_matmul, a, w_bytes, options=options, native=True)
    check(int8_reads, torch.randn(8, 128), w_bytes, atol=1e-3, rtol=1e-5, options=options, native=True)
    check(lambda wb: (wb.view(torch.float8_e4m3fn), wb.view(torch.int8).t()), w_bytes, atol=0, rtol=0,
          options=options, native=True)


class DelayedScaling(torch.nn.Module):
    """A float8 linear with delayed scaling (the recipe of Transformer Engine and torchao's
    delayed float8): the activation's scale comes from the largest amax of the previous calls,
    kept in a history buffer this call shifts, writing its own amax in front."""

    def __init__(self, weight: torch.Tensor, history: int = 4):
        super().__init__()
        self.register_buffer("weight", weight.to(torch.float8_e4m3fn))
        self.register_buffer("amax_history", torch.full((history,), 1.0))

    def forward(self, x):
        scale = 448.0 / self.amax_history.max().clamp(min=1e-12)
        x8 = (x * scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
        self.amax_history.copy_(torch.cat([x.abs().amax()[None], self.amax_history[:-1]]))
        return torch._scaled_mm(x8, self.weight.t(), scale_a=scale.reciprocal(), scale_b=torch.ones(()),
                                out_dtype=torch.bfloat16)


@pytest.mark.parametrize("options", TARGETS)
def test_delayed_scaling_updates_its_amax_history_as_eager(options):
    torch.manual_seed(0)
    weight = torch.randn(80, 96)
    eager, compiled = DelayedScaling(weight), DelayedScaling(weight)
    step = torch.compile(compiled, backend="hetero", options={**options, "strict": True})
    torch._dynamo.reset()
    with torch.no_grad():
        for call in range(3):
            x = torch.randn(48, 96) * (call + 1)
            want, got = eager(x), step(x)
            torch.testing.assert_close(got, want, atol=1e-2, rtol=1e-2)
            assert torch.equal(compiled.amax_history, eager.amax_history), call
    torch._dynamo.reset()
