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
    """Every sign, exponent and top mantissa byte (the bits fp8 keeps and the first ones it
    rounds away), each with low bits just below, at and above the rounding tie of every
    mantissa width; plus infinities, NaNs, zeros and the fp32 subnormals' edges."""
    high = torch.arange(1 << 16, dtype=torch.int64) << 16
    lows = [0, 1, 0xFFFF, 0x8000, 0x7FFF, 0x8001]
    for shift in (20, 21):     # the e4m3 / e5m2 rounding position within the high half
        lows += [(1 << (shift - 16 - 1)) << 16 >> 16]
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
