"""Convolution generated where the profile declares no convolution library (rivos-sim): an
implicit GEMM whose A operand is the im2col gather (never materialized), depthwise as a direct
reduction, forward and backward, checked against eager under Triton's interpreter and on the
host executor (which runs the same plan with ATen's convolution for the GEMM steps)."""
import pytest
import torch
import torch.nn.functional as F

import torch_hetero
from torch_hetero.device_models import get_profile
from torch_hetero.runtime import triton_run
from torch_hetero.tools.report import compile_and_run
from utils import check, compiled_kernels, planned_kernels, profile_variant

RIVOS = {"device": "rivos-sim", "executor": "interpret"}
TOL = {torch.float32: 1e-4, torch.bfloat16: 3e-2}

# (name, input, weight, bias?, conv2d keywords): channels and spatial sizes off every tile
CASES = [
    ("stride2_pad1", (2, 3, 9, 9), (5, 3, 3, 3), True, dict(stride=2, padding=1)),
    ("dilation2", (2, 3, 9, 9), (5, 3, 3, 3), False, dict(padding=2, dilation=2)),
    ("groups2", (2, 4, 7, 7), (6, 2, 3, 3), True, dict(padding=1, groups=2)),
    ("1x1", (2, 3, 5, 5), (7, 3, 1, 1), False, {}),
    ("one_output_pixel", (1, 4, 2, 2), (5, 4, 3, 3), True, dict(stride=2, padding=1)),  # M = 1: rows broadcast
    ("batch1_rect", (1, 3, 8, 7), (4, 3, 3, 2), True, dict(stride=(2, 1), padding=(1, 0))),
    ("depthwise", (2, 4, 7, 7), (4, 1, 3, 3), True, dict(stride=2, padding=1, groups=4)),
    ("depthwise_multiplier", (2, 3, 6, 6), (6, 1, 3, 3), False, dict(padding=1, groups=3)),
    ("long_k", (2, 3, 24, 24), (4, 3, 3, 3), True, dict(padding=1)),  # grad_weight: 2 tiles, K=1152 split
]


def _conv(kwargs):
    return lambda x, w, b=None: F.conv2d(x, w, b, **kwargs)


def _inputs(x, w, bias, dtype):
    torch.manual_seed(0)
    tensors = [torch.randn(x), torch.randn(w)] + ([torch.randn(w[0])] if bias else [])
    return [t.to(dtype) for t in tensors]


@pytest.mark.parametrize("name, x, w, bias, kwargs", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("executor", ["interpret", "host"])
def test_convolution_and_gradients_match_eager(name, x, w, bias, kwargs, executor):
    check(_conv(kwargs), *_inputs(x, w, bias, torch.float32), grad=True, atol=1e-4, rtol=1e-4,
          options={**RIVOS, "executor": executor}, native=True)


@pytest.mark.parametrize("name", ["stride2_pad1", "groups2", "depthwise"])
def test_bf16_convolution_and_gradients_match_eager(name):
    _, x, w, bias, kwargs = next(c for c in CASES if c[0] == name)
    check(_conv(kwargs), *_inputs(x, w, bias, torch.bfloat16), grad=True, atol=3e-2, rtol=3e-2,
          options=RIVOS, native=True)


def test_weight_gradient_over_a_long_k_is_split():
    """grad_weight is a GEMM over N·OH·OW: few output tiles and a long K, so K is split (the
    ``long_k`` case above checks its values)."""
    _, x, w, bias, kwargs = next(c for c in CASES if c[0] == "long_k")
    x, w, b = (t.requires_grad_() for t in _inputs(x, w, bias, torch.float32))
    report = torch_hetero.explain(lambda x, w, b: _conv(kwargs)(x, w, b).sum().backward(), x, w, b,
                                  device="rivos-sim")
    assert any("convolution_backward" in line and "split-K" in line for line in report.schedule.splitlines())


def test_conv_batch_norm_relu_is_the_gemm_epilogue():
    """Bias, batch norm in eval and ReLU are the implicit GEMM's epilogue: the convolution's
    output tile is never stored.  The batch norm's per-channel scale is a kernel of its own,
    run before the convolution, which waits for its epilogue."""
    block = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.BatchNorm2d(5), torch.nn.ReLU())
    block.eval()
    with torch.no_grad():
        block[1].running_mean.uniform_(-1, 1)
        block[1].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 6, 6)
    check(block, x, atol=1e-4, rtol=1e-4, options=RIVOS, native=True)
    _, kernels = planned_kernels(block, [x], RIVOS)
    assert [k.group.outer for k in kernels if k.group.matmul is None] == [(5,)]
    conv, = [k for k in kernels if k.group.matmul is not None]
    assert conv.group.matmul.gemm is not None and conv.group.nodes
    assert conv.group.matmul.result.name in conv.group.local


def test_output_keeps_eager_layout():
    """A channels-last input gives a channels-last output, as eager: the GEMM's rows are stored
    through the output's strides."""
    x = torch.randn(2, 3, 6, 5).to(memory_format=torch.channels_last)
    w = torch.randn(4, 3, 3, 3)
    out = check(_conv(dict(padding=1)), x, w, atol=1e-4, rtol=1e-4, options=RIVOS, native=True)
    assert out.stride() == F.conv2d(x, w, padding=1).stride()


def test_conv1d_is_generated():
    check(lambda x, w: F.conv1d(x, w, stride=2, padding=1), torch.randn(2, 3, 11), torch.randn(4, 3, 3),
          grad=True, atol=1e-4, rtol=1e-4, options=RIVOS, native=True)


def test_implicit_gemm_gathers_inside_the_k_loop():
    """The im2col operand is computed from masked loads of the input inside the K loop (no
    buffer holds it), on the matrix units in the device model's tile."""
    x, w = torch.randn(2, 3, 9, 9), torch.randn(5, 3, 3, 3)
    _, kernels = compiled_kernels(_conv(dict(stride=2, padding=1)), [x, w], RIVOS, native=True)
    assert len(kernels) == 1
    source = kernels[0].source
    loop = source[source.index("for koffset"):source.index("acc += _dot")]
    assert "tl.where(" in loop and "mask=(rm < 50) & (ka < 27) & (" in loop
    _, plans = planned_kernels(_conv(dict(stride=2, padding=1)), [x, w], RIVOS)
    tile = plans[0].matmul_tile
    assert tile is not None and "implicit GEMM" in plans[0].group.decisions[0]


def test_depthwise_is_a_reduction_not_a_gemm():
    x, w = torch.randn(2, 4, 7, 7), torch.randn(4, 1, 3, 3)
    _, plans = planned_kernels(_conv(dict(padding=1, groups=4)), [x, w], RIVOS)
    assert len(plans) == 1 and plans[0].group.matmul is None


def test_a_profile_with_a_convolution_library_prices_it_against_the_template():
    """h100 declares cuDNN: a convolution alone is its call, one with a bias and ReLU our implicit
    GEMM with them as its epilogue (cuDNN at the profile's gemm_efficiency plus the epilogue's own
    kernel, against the template's tile), each saying why; a depthwise one is not priced (no
    template GEMM): cuDNN's."""
    assert get_profile("h100").target.convolution
    x, w, b = torch.randn(2, 64, 28, 28).bfloat16(), torch.randn(128, 64, 3, 3).bfloat16(), torch.randn(128).bfloat16()
    report = torch_hetero.explain(_conv(dict(padding=1)), x, w, device="h100")
    assert not report.kernels and "library call: cuDNN, declared by the profile; est. cuDNN" in report.schedule
    report = torch_hetero.explain(lambda x, w, b: _conv(dict(padding=1))(x, w, b).relu(), x, w, b, device="h100")
    assert not report.externs and "generated as an implicit GEMM in the device model's tile: est." in report.schedule
    dw = torch.randn(64, 1, 3, 3).bfloat16()
    report = torch_hetero.explain(_conv(dict(padding=1, groups=64)), x, dw, device="h100")
    assert not report.kernels and "library call: cuDNN, declared by the profile\n" in report.schedule + "\n"


def test_transposed_convolution_falls_back():
    """Not generated: a fallback, the target's debt (strict mode raises)."""
    with pytest.raises(Exception, match="transposed convolution"):
        check(lambda x, w: F.conv_transpose2d(x, w), torch.randn(1, 3, 4, 4), torch.randn(3, 2, 3, 3),
              options=RIVOS, native=True)


@pytest.mark.parametrize("profile, library", [("h100", '["cuDNN"]'), ("mi300x", '["MIOpen"]')])
def test_implicit_gemm_compiles_for_the_real_target(tmp_path, profile, library):
    """The profile without its convolution library: the implicit GEMM (bf16, padded, with a
    bias and ReLU epilogue) and the depthwise reduction build ahead of time for its target
    (cuda:90, hip:gfx942), within its shared memory."""
    path = profile_variant(tmp_path, profile, f"{profile}-no-conv", (f"convolution = {library}", "convolution = []"))

    def block(x, w, b, dw):
        return F.conv2d(F.conv2d(x, w, b, padding=1).relu(), dw, padding=1, groups=8)
    inputs = [torch.randn(2, 3, 9, 9), torch.randn(8, 3, 3, 3), torch.randn(8), torch.randn(8, 1, 3, 3)]
    [(_, graph, _)] = compile_and_run(block, [t.to(torch.bfloat16) for t in inputs], {}, {"device": str(path)})
    kernels = graph.rendered["triton"]
    assert len(kernels) == 2 and graph.plan.kernels[0].group.matmul.gemm is not None
    [source] = [code for name, code in graph.code.items() if name.endswith(".triton.py")]
    shared = triton_run.compile_ahead(source, kernels, get_profile(profile).triton_target)
    assert 0 < shared["kernel0"].shared_bytes and not shared["kernel0"].problems(get_profile(profile).local_sram_bytes)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("x, w, grad", [((0, 3, 8, 8), (4, 3, 3, 3), True), ((1, 0, 5, 5), (2, 0, 3, 3), False),
                                        ((2, 3, 9, 7), (4, 3, 3, 3), True)],
                         ids=["empty_batch", "no_input_channels", "sizes"])
def test_sizes_as_symbols_and_empty_values(x, w, grad, dynamic):
    """An empty batch (no GEMM rows: nothing launched), no input channels (K = 0: the
    output is the bias alone), and sizes as symbols read at run time."""
    torch.manual_seed(0)
    check(lambda x, w, b: F.conv2d(x, w, b, padding=1).relu(), torch.randn(x), torch.randn(w), torch.randn(w[0]),
          grad=grad, dynamic=dynamic, atol=1e-4, rtol=1e-4, options=RIVOS, native=True)


def test_resnet_has_no_convolution_fallback_and_matches_eager_on_the_host_executor():
    """The zoo's ResNet on rivos-sim, strict (no fallback may run): every convolution is a
    generated implicit GEMM, most with their batch norm, ReLU or residual add fused as the
    epilogue; the host executor
    runs the same plan (ATen's convolution for the GEMM steps).  The whole model under the
    interpreter takes minutes (measured: ~130 s at 4x3x64x64), too slow for the suite."""
    from torch_hetero.tools import model_zoo
    pytest.importorskip("transformers")
    zoo = model_zoo.build("resnet")
    x = torch.randn(1, 3, 32, 32)
    options = {"device": "rivos-sim", "executor": "host"}
    out = check(lambda x: zoo.main_output(zoo.model(x)), x, atol=1e-4, rtol=1e-4, options=options, native=True)
    assert out.shape == zoo.main_output(zoo.model(x)).shape
    _, plans = planned_kernels(zoo.model, [x], options)
    convolutions = [k for k in plans if k.group.matmul is not None and k.group.matmul.gemm is not None]
    assert len(convolutions) == 12
    assert sum(bool(k.group.nodes) for k in convolutions) == 7  # the others feed a convolution or a pooling


def test_conv3d_is_generated():
    check(lambda x, w: F.conv3d(x, w, stride=(1, 2, 1), padding=1), torch.randn(1, 2, 4, 5, 5),
          torch.randn(3, 2, 3, 3, 3), grad=True, atol=1e-4, rtol=1e-4, options=RIVOS, native=True)
