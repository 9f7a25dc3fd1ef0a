"""int8: ``aten._weight_int8pack_mm`` (weight-only int8 with a scale per output channel, what
torchao's int8 weight-only quantization calls on the CPU) is our matmul template on Triton
profiles, the weight converted to the input's format in the operand load (never written to
memory as floats) and its scales in the epilogue; ``aten._int_mm`` (int8 x int8, exact int32
sums, with dynamically quantized activations; uint8 activations fed as A - 128 with B's column
sums added back) is the template with an int32 accumulator.  On the host both are ATen's
kernels."""
import pytest
import torch
import torch.nn.functional as F

import torch_hetero
from torch_hetero.device_models import get_profile
from torch_hetero.runtime import triton_run
from utils import check, compiled_kernels

TARGETS = [pytest.param({"device": "cpu"}, id="cpu"),
           pytest.param({"device": "h100", "executor": "interpret"}, id="h100"),
           pytest.param({"device": "mtia-v2", "executor": "interpret"}, id="mtia-v2")]


def int8_linear(x, w, scales):
    return F.silu(torch._weight_int8pack_mm(x, w, scales))


def inputs(dtype, m=48, n=80, k=96):
    torch.manual_seed(0)
    w = torch.randint(-128, 128, (n, k), dtype=torch.int8)
    w[0, :4] = torch.tensor([-128, 127, 0, -1], dtype=torch.int8)  # the int8 extremes and zero
    scales = (torch.rand(n) / 50).to(dtype)
    scales[1] = 0                                                  # a zero scale: its channel is 0
    return torch.randn(m, k).to(dtype), w, scales


@pytest.mark.parametrize("options", TARGETS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_weight_only_int8_matches_eager_with_no_fallback(dtype, options):
    tol = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    out = check(int8_linear, *inputs(dtype), atol=tol, rtol=tol, options=options, native=True)
    assert not out[:, 1].any()


def test_the_weight_is_converted_in_the_operand_load():
    """One kernel: the int8 weight is loaded and rounded to bf16 inside the K loop, straight
    into the dot (no float32 round trip), and the scales and SiLU are the epilogue."""
    _, (kernel,) = compiled_kernels(int8_linear, inputs(torch.bfloat16),
                                    {"device": "h100", "executor": "interpret"}, native=True)
    loop = kernel.source[kernel.source.index("for koffset"):kernel.source.index("acc += _dot")]
    weight = next(line.split(" = ")[0].strip() for line in loop.splitlines() if "tl.load(arg1" in line)
    assert f"b = _to_bf16({weight})" in loop, kernel.source
    assert "acc * tmp" in kernel.source


@pytest.mark.parametrize("device", ["h100", "a100", "mi300x"])
def test_weight_only_int8_kernels_build_for_the_real_targets(device):
    with torch_hetero.backend.collect_compiled_graphs() as graphs:
        torch.compile(int8_linear, backend="hetero",
                      options={"device": device, "executor": "interpret", "strict": True})(
            *inputs(torch.bfloat16, m=256, n=1024, k=512))
    (_, graph, _), = graphs
    kernels = graph.rendered["triton"]
    built = triton_run.compile_ahead(graph.code["inference.triton.py"], kernels, get_profile(device).triton_target)
    assert all(r.spill_bytes == 0 for r in built.values()), built
    torch._dynamo.reset()


def quantize_rows(x):
    """Dynamic per-row int8 activation quantization (torchao's int8 dynamic activation recipe
    written in plain torch): scale by the row's amax, round, clamp to [-128, 127]."""
    scale = x.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127
    return (x / scale).round().clamp(-128, 127).to(torch.int8), scale


def int8_dynamic_linear(x, w8, w_scale):
    x8, x_scale = quantize_rows(x)
    return torch._int_mm(x8, w8).float() * x_scale * w_scale


@pytest.mark.parametrize("options", TARGETS)
def test_int_mm_is_exact(options):
    """int32 sums over a K of 4 BK steps, the int8 extremes included: equal, not close."""
    torch.manual_seed(0)
    a = torch.randint(-128, 128, (40, 512), dtype=torch.int8)
    b = torch.randint(-128, 128, (512, 72), dtype=torch.int8)
    a[0], b[:, 0] = -128, -128    # the largest product sum: 512 * 2**14
    check(lambda a, b: (torch._int_mm(a, b), torch._int_mm(a, b) // 3), a, b, options=options, native=True)


@pytest.mark.parametrize("options", TARGETS)
def test_dynamic_int8_activations_with_int8_weights_compile_with_no_fallback(options):
    torch.manual_seed(0)
    x, w8 = torch.randn(64, 256), torch.randint(-128, 128, (256, 96), dtype=torch.int8)
    x[2] = 0                      # an all-zero row: the clamped amax keeps its scale finite
    check(int8_dynamic_linear, x, w8, torch.rand(1, 96) / 100, atol=1e-5, rtol=1e-5, options=options, native=True)


@pytest.mark.parametrize("device", ["h100", "a100", "mi300x"])
def test_int8_matmuls_build_for_the_real_targets_with_int32_sums_unsplit(device):
    """A long K that would split a float GEMM's sum: the int8 one is never split (its partials
    would be fp32), and it builds with no spill."""
    torch.manual_seed(0)
    a, b = torch.randint(-128, 128, (64, 8192), dtype=torch.int8), torch.randint(-128, 128, (8192, 64), dtype=torch.int8)
    with torch_hetero.backend.collect_compiled_graphs() as graphs:
        torch.compile(lambda a, b: torch._int_mm(a, b).relu(), backend="hetero",
                      options={"device": device, "executor": "interpret", "strict": True})(a, b)
    (_, graph, _), = graphs
    kernels = graph.rendered["triton"]
    assert all("SPLIT_K" not in k.constexprs for k in kernels) and "tl.full([BM, BN], 0, tl.int32)" in kernels[0].source
    built = triton_run.compile_ahead(graph.code["inference.triton.py"], kernels, get_profile(device).triton_target)
    assert all(r.spill_bytes == 0 for r in built.values()), built
    torch._dynamo.reset()


@pytest.mark.parametrize("options", TARGETS)
def test_an_unsigned_int8_input_is_exact(options):
    """ATen's CPU kernel takes uint8 x int8 (torchao's asymmetric activations); the template
    feeds tl.dot A - 128 as int8 and adds 128 x B's column sums back: exact, the uint8
    extremes included."""
    torch.manual_seed(0)
    a, b = torch.randint(0, 256, (32, 64), dtype=torch.uint8), torch.randint(-128, 128, (64, 48), dtype=torch.int8)
    a[0, :3] = torch.tensor([0, 255, 128], dtype=torch.uint8)
    b[:, 0] = -128
    check(torch._int_mm, a, b, atol=0, rtol=0, options=options, native=True)


@pytest.mark.parametrize("device", ["h100", "a100", "mi300x"])
def test_unsigned_int8_matmuls_build_for_the_real_targets(device):
    torch.manual_seed(0)
    a, b = torch.randint(0, 256, (256, 512), dtype=torch.uint8), torch.randint(-128, 128, (512, 256), dtype=torch.int8)
    with torch_hetero.backend.collect_compiled_graphs() as graphs:
        torch.compile(torch._int_mm, backend="hetero", options={"device": device, "executor": "interpret", "strict": True})(a, b)
    (_, graph, _), = graphs
    (kernel,) = graph.rendered["triton"]
    assert "b_sums += tl.reduce(b.to(tl.int32), 0, _add)" in kernel.source
    built = triton_run.compile_ahead(graph.code["inference.triton.py"], [kernel], get_profile(device).triton_target)
    assert all(r.spill_bytes == 0 for r in built.values()), built
    torch._dynamo.reset()


@pytest.mark.parametrize("options", TARGETS[:2])
def test_weight_only_int8_with_dynamic_rows(options):
    for m in (48, 33):
        check(int8_linear, *inputs(torch.bfloat16, m=m), dynamic=True, atol=1e-2, rtol=1e-2, options=options,
              native=True)


def torchao_int8_weight_only(x, w, scales):
    """What torchao 0.18's int8 weight-only linear traces to: the transposed int8 weight
    converted to x's dtype into a plain mm, the scales after it."""
    return torch.mm(x, w.t().to(x.dtype)) * scales


def dequantized_linear(x, w, scales):
    """The same written with a dequantized float weight, transposed by ``F.linear`` (an addmm:
    the scales double as its bias)."""
    return F.linear(x, w.to(x.dtype) * scales[:, None], scales)


DEQUANTIZED = [torchao_int8_weight_only, dequantized_linear]


@pytest.mark.parametrize("options", TARGETS + [pytest.param({"device": "h100"}, id="h100-host-executor")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("fn", DEQUANTIZED)
def test_a_dequantized_weight_matches_eager(fn, dtype, options):
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    check(fn, *inputs(dtype), atol=tol, rtol=tol, options=options, native=True)


@pytest.mark.parametrize("fn", DEQUANTIZED)
def test_a_dequantized_weight_is_computed_in_the_operand_load_never_written(fn):
    """Where the template runs the matmul, the int8 weight is what its K loop loads and the
    float weight has neither a kernel nor a buffer; the host executor (ATen's GEMM) still
    writes it, in a kernel the plan says the template would not need."""
    options = {"device": "h100", "executor": "interpret"}
    _, graphs = _compiled(fn, inputs(torch.bfloat16), options)
    (_, graph, _), = graphs
    (kernel,) = graph.rendered["triton"]
    loop = kernel.source[kernel.source.index("for koffset"):kernel.source.index("acc += _dot")]
    assert "tl.load(arg1" in loop and "b = _to_bf16(" in loop, kernel.source   # arg1: the int8 weight
    (template,) = graph.plan.kernels
    (weight,) = template.group.dequantized
    assert weight not in graph.code["inference.py"], graph.code["inference.py"]
    _, graphs = _compiled(fn, inputs(torch.bfloat16), {"device": "h100"})
    (_, graph, _), = graphs
    dequantize, _ = graph.plan.kernels
    assert "computed in the operand loads of aten" in dequantize.group.decisions[0]
    assert dequantize.name in [k.name for k in graph.rendered["cpp"]]
    assert dequantize.name not in [k.name for k in graph.rendered["triton"]]
    # the device's estimate: no such kernel, and the template reads the int8 weight's bytes
    torch._dynamo.reset()
    report = torch_hetero.explain(fn, *inputs(torch.bfloat16), device="h100")
    (template,) = report.kernels
    x, w, scales = inputs(torch.bfloat16)
    assert template.bytes < x.nbytes + 2 * w.numel() + 2 * 48 * 80, template


def test_a_dequantized_weight_read_elsewhere_is_written():
    """The float weight is also returned: it is written once and the template reads it."""
    def also_returned(x, w, scales):
        weight = w.t().to(x.dtype)
        return torch.mm(x, weight) * scales, weight
    _, graphs = _compiled(also_returned, inputs(torch.bfloat16), {"device": "h100", "executor": "interpret"})
    (_, graph, _), = graphs
    assert not any(k.group.in_template or k.group.dequantized for k in graph.plan.kernels)


def _compiled(fn, inputs_, options):
    torch._dynamo.reset()
    with torch.no_grad(), torch_hetero.backend.collect_compiled_graphs() as graphs:
        out = torch.compile(fn, backend="hetero", options={"strict": True, **options})(*inputs_)
    return out, graphs


def test_on_the_host_an_int8_weight_only_linear_is_atens_int8_kernel():
    """The traced form (convert the whole weight, BLAS, scale) becomes ATen's CPU kernel that
    reads the int8 weight; a K it would crash on (bf16, K not a multiple of 16) and a converted
    weight read elsewhere keep the traced form."""
    def schedule(fn, *args):
        torch._dynamo.reset()
        return torch_hetero.explain(fn, *args, device="cpu").schedule
    assert "extern aten._weight_int8pack_mm" in schedule(torchao_int8_weight_only, *inputs(torch.bfloat16))
    odd = inputs(torch.bfloat16, k=40)
    check(torchao_int8_weight_only, *odd, atol=1e-2, rtol=1e-2, options={"device": "cpu"}, native=True)
    assert "_weight_int8pack_mm" not in schedule(torchao_int8_weight_only, *odd)

    def also_returned(x, w, scales):
        weight = w.t().to(x.dtype)
        return torch.mm(x, weight) * scales, weight
    assert "_weight_int8pack_mm" not in schedule(also_returned, *inputs(torch.bfloat16))
    torch._dynamo.reset()


@pytest.mark.parametrize("device", ["cpu", "h100"])
def test_freezing_keeps_an_int8_weight_int8(device):
    """Constant folding converts no quantized weight to floats: the frozen layer still reads
    its int8 weight (ATen's int8 kernel on the host, the template's operand loads on h100)."""
    from torch_hetero.tools.formats import Int8WeightOnlyLinear
    torch.manual_seed(0)
    layer = Int8WeightOnlyLinear(torch.randn(80, 96), torch.randn(80)).eval()
    x = torch.randn(48, 96, dtype=torch.bfloat16)
    with torch.no_grad():
        check(layer, x, atol=2e-2, rtol=2e-2, options={"device": device, "freeze": True}, native=True)
        _, graphs = _compiled(layer, (x,), {"device": device, "freeze": True})
    (_, graph, _), = graphs
    constants = graph.loadable.constants
    assert constants and all(t.dtype != torch.bfloat16 or t.numel() < 80 * 96 for t in constants.values()), \
        {name: (t.dtype, tuple(t.shape)) for name, t in constants.items()}
    if device == "cpu":
        assert [e.call.name for e in graph.plan.externs] == ["aten._weight_int8pack_mm.default"]
