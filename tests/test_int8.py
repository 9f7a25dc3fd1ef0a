"""int8 weights: ``aten._weight_int8pack_mm`` (weight-only int8 with a scale per output
channel, what torchao's int8 weight-only quantization calls on the CPU) is our matmul template
on Triton profiles, the weight converted to the input's format in the operand load (never
written to memory as floats) and its scales in the epilogue; on the host, ATen's kernel."""
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
