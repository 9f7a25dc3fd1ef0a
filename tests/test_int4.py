"""int4 weights with group-wise scales: a weight kept as bytes (two 4-bit values each),
unpacked with shifts and masks and dequantized per group of K in plain torch, is computed in
the matmul template's operand loads on Triton profiles (the float weight never reaches memory)
and is a C++ kernel before ATen's GEMM on the host.  ATen's own CPU int4 kernel,
``_weight_int4pack_mm_for_cpu``, is a library call on the host and a reported fallback on
Triton profiles (its packing is the host CPU's vector layout)."""
import pytest
import torch

import torch_hetero
from torch_hetero.device_models import get_profile
from torch_hetero.runtime import triton_run
from utils import check

GROUP = 32
TARGETS = [pytest.param({"device": "cpu"}, id="cpu"),
           pytest.param({"device": "h100", "executor": "interpret"}, id="h100"),
           pytest.param({"device": "mtia-v2", "executor": "interpret"}, id="mtia-v2")]


def interleaved(packed):
    """[n, k/2] bytes → [n, k] values 0..15: column 2j in the low nibble of byte j, 2j+1 in the high."""
    return torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(packed.shape[0], -1)


def halves(packed):
    """[n, k/2] bytes → [n, k] values 0..15: the first half of K in the low nibbles, the second in the high."""
    return torch.cat([packed & 0xF, packed >> 4], dim=-1)


def int4_linear(unpack):
    def linear(x, packed, scales, zeros):
        q = unpack(packed)
        q = q.reshape(q.shape[0], -1, GROUP).to(x.dtype)
        w = ((q - zeros[..., None]) * scales[..., None]).reshape(q.shape[0], -1)
        return x @ w.t()
    linear.__name__ = f"int4_linear_{unpack.__name__}"
    return linear


LINEARS = [int4_linear(interleaved), int4_linear(halves)]


def inputs(dtype, m=24, n=80, k=128):
    torch.manual_seed(0)
    packed = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8)
    packed[0, :2] = torch.tensor([0x00, 0xFF], dtype=torch.uint8)      # the int4 extremes, 0 and 15
    scales = (torch.rand(n, k // GROUP) / 50).to(dtype)
    scales[1, 0] = 0                                                   # a zero scale: its group is 0
    zeros = torch.randint(0, 16, (n, k // GROUP)).to(dtype)
    return torch.randn(m, k).to(dtype), packed, scales, zeros


@pytest.mark.parametrize("options", TARGETS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("fn", LINEARS, ids=lambda f: f.__name__)
def test_int4_group_wise_weights_match_eager_with_no_fallback(fn, dtype, options):
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    check(fn, *inputs(dtype), atol=tol, rtol=tol, options=options, native=True)


@pytest.mark.parametrize("fn", LINEARS, ids=lambda f: f.__name__)
def test_the_int4_weight_is_unpacked_in_the_operand_load(fn):
    """One kernel: its K loop loads the packed bytes and the group's scale and zero, and no
    buffer holds the float weight."""
    graph = _graph(fn, inputs(torch.bfloat16), {"device": "h100", "executor": "interpret"})
    (kernel,) = graph.rendered["triton"]
    loop = kernel.source[kernel.source.index("for koffset"):kernel.source.index("acc += _dot")]
    assert "& 15" in loop and ">> 4" in loop and "// 32" in loop, kernel.source
    (template,) = graph.plan.kernels
    (weight,) = template.group.dequantized
    assert weight not in graph.code["inference.py"]


@pytest.mark.parametrize("device", ["h100", "mi300x"])
def test_int4_kernels_build_for_the_real_targets_without_spills(device):
    graph = _graph(LINEARS[0], inputs(torch.bfloat16, m=256, n=1024, k=512), {"device": device, "executor": "interpret"})
    built = triton_run.compile_ahead(graph.code["inference.triton.py"], graph.rendered["triton"],
                                     get_profile(device).triton_target)
    assert all(r.spill_bytes == 0 for r in built.values()), built


def atens_int4(x, packed, scales_and_zeros):
    return torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, GROUP, scales_and_zeros)


def atens_inputs():
    torch.manual_seed(0)
    w = torch.randint(0, 16, (64, 128), dtype=torch.int32)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(w, 1)
    return torch.randn(8, 128, dtype=torch.bfloat16), packed, torch.randn(128 // GROUP, 64, 2, dtype=torch.bfloat16)


def test_atens_cpu_int4_kernel_is_the_hosts_library_and_a_reported_fallback_elsewhere():
    check(atens_int4, *atens_inputs(), atol=0, rtol=0, options={"device": "cpu"}, native=True)
    torch._dynamo.reset()
    assert torch_hetero.explain(atens_int4, *atens_inputs(), device="h100").fallbacks == {
        "aten._weight_int4pack_mm_for_cpu": 1}
    with pytest.raises(Exception, match="packed in the host CPU's vector layout"):
        _graph(atens_int4, atens_inputs(), {"device": "h100"})
    torch._dynamo.reset()


def _graph(fn, inputs_, options):
    torch._dynamo.reset()
    with torch.no_grad(), torch_hetero.backend.collect_compiled_graphs() as graphs:
        torch.compile(fn, backend="hetero", options={"strict": True, **options})(*inputs_)
    (_, graph, _), = graphs
    torch._dynamo.reset()
    return graph
