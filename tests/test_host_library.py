"""Frozen inference (lowering/freezing.py) and the host's library planning
(planning/host_library.py): results match eager, and the graph takes the form planned —
batch norm folded, padding folded, channels-last where priced so, epilogues as oneDNN post-ops,
weights prepacked — with static and dynamic shapes."""
import dataclasses

import pytest
import torch

from torch_hetero.backend import collect_compiled_graphs
from torch_hetero.errors import HeteroCompileError
from torch_hetero.lowering import onednn
from torch_hetero.lowering.freezing import fold_padding
from torch_hetero.planning import host_library
from torch_hetero.planning.plan import schedule_text

pytestmark = pytest.mark.skipif(not onednn.ONEDNN, reason="this torch build has no oneDNN")


class Block(torch.nn.Module):
    """MobileNetV2's inverted residual with TensorFlow "same" padding (explicit pads)."""

    def __init__(self, channels=16, expanded=48):
        super().__init__()
        self.expand = torch.nn.Conv2d(channels, expanded, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(expanded)
        self.pad = torch.nn.ZeroPad2d(1)
        self.depthwise = torch.nn.Conv2d(expanded, expanded, 3, groups=expanded, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(expanded)
        self.project = torch.nn.Conv2d(expanded, channels, 1)
        self.bn3 = torch.nn.BatchNorm2d(channels)
        for bn in (self.bn1, self.bn2, self.bn3):   # statistics that are not the identity
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.data.uniform_(0.5, 2)
            bn.bias.data.uniform_(-1, 1)

    def forward(self, x):
        y = torch.nn.functional.relu6(self.bn1(self.expand(x)))
        y = torch.nn.functional.relu6(self.bn2(self.depthwise(self.pad(y))))
        return torch.relu(self.bn3(self.project(y)) + x)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.SiLU(), Block(), Block()).eval()


def _run(model, inputs, options, speedup=None, monkeypatch=None, dynamic=False):
    """(outputs per input, the compiled graphs); ``speedup``: the host's channels-last ratio as
    planned (forces the layout choice either way)."""
    if speedup is not None:
        plan = host_library.plan_layout
        monkeypatch.setattr(host_library, "plan_layout", lambda gm, profile: plan(
            gm, dataclasses.replace(profile, channels_last_speedup=speedup)))
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="hetero", dynamic=dynamic, options={"strict": True, **options})
    with torch.no_grad(), collect_compiled_graphs() as graphs:
        outputs = [compiled(x) for x in inputs]
    return outputs, graphs


def _wrapper(graphs) -> str:
    return "\n".join(g.code[f"{kind}.py"] for kind, g, _ in graphs)


@pytest.mark.parametrize("speedup", [1.0, 100.0], ids=["nchw", "channels-last"])
@pytest.mark.parametrize("freeze", [False, True], ids=["parameters", "frozen"])
def test_convolutional_block_matches_eager(monkeypatch, speedup, freeze):
    model, x = _model(), torch.randn(2, 3, 20, 20)
    (out,), graphs = _run(model, [x], {"freeze": freeze}, speedup, monkeypatch)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=2e-5)
    assert out.stride() == expected.stride()   # converted back at the graph's edge
    plan = graphs[0][1].plan
    assert plan.notes[0].startswith("layout: " + ("channels-last" if speedup > 1 else "NCHW"))
    code = _wrapper(graphs)
    assert "constant_pad_nd" not in schedule_text(plan, graphs[0][1].fused_ops)   # folded into the convolution
    if freeze:   # batch norm folded: every epilogue as oneDNN post-ops
        assert code.count("'hardtanh', [0, 6]") == 4 and code.count("'swish'") == 1
        assert code.count("_convolution_pointwise.binary") == 2   # the residual add and relu
        constants = graphs[0][1].loadable.constants
        # channels-last: every convolution oneDNN's, on a prepacked weight
        assert "aten.convolution" not in code
        assert sum(c.is_mkldnn for c in constants.values()) == (7 if speedup > 1 else 0)


class CrossStage(torch.nn.Module):
    """CSPNet's stage entry: a convolution's output split in two along the channels, one half
    through an in-place activation (functionalized, the split becomes ``as_strided`` with the
    NCHW strides eager traced)."""

    def __init__(self):
        super().__init__()
        self.expand = torch.nn.Conv2d(64, 256, 1, bias=False)
        self.act = torch.nn.LeakyReLU(inplace=True)

    def forward(self, x):
        a, b = self.expand(x).split(128, dim=1)
        return self.act(b), a


@pytest.mark.parametrize("freeze", [False, True], ids=["parameters", "frozen"])
def test_split_of_a_channels_last_convolution(monkeypatch, freeze):
    """cspresnet50's wrong result: the explicit strides read the channels-last output as NCHW."""
    torch.manual_seed(0)
    model, x = CrossStage().eval(), torch.randn(2, 64, 8, 8)
    (out,), graphs = _run(model, [x], {"freeze": freeze}, 100.0, monkeypatch)
    with torch.no_grad():
        expected = model(x)
    assert graphs[0][1].plan.notes[0].startswith("layout: channels-last")
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=2e-5)


def test_post_op_reason_in_the_schedule():
    model, x = _model(), torch.randn(2, 3, 20, 20)
    _, graphs = _run(model, [x], {"freeze": True})
    text = schedule_text(graphs[0][1].plan, graphs[0][1].fused_ops)
    assert "add + relu as oneDNN post-ops: saves a pass over the output (est." in text
    assert "library call: oneDNN, declared by the profile" in text


@pytest.mark.parametrize("freeze", [False, True], ids=["parameters", "frozen"])
def test_channels_last_with_dynamic_shapes(monkeypatch, freeze):
    """Symbolic channels-last strides: each ATen call's input is realized in the layout its
    traced output strides assume."""
    model = _model()
    inputs = [torch.randn(b, 3, s, s) for b, s in ((2, 20), (3, 24), (2, 16))]
    outputs, graphs = _run(model, inputs, {"freeze": freeze}, 100.0, monkeypatch, dynamic=True)
    assert graphs[0][1].plan.notes[0].startswith("layout: channels-last")
    with torch.no_grad():
        for x, out in zip(inputs, outputs):
            torch.testing.assert_close(out, model(x), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("speedup", [1.0, 100.0], ids=["nchw", "channels-last"])
def test_convnext_with_dynamic_shapes(monkeypatch, speedup):
    """ConvNeXt's channels moved last for LayerNorm and the MLP, then back for a convolution:
    the IR spells a traced size differently ((s*s)//s for s), and the value must still take the
    traced layout (it computed garbage before)."""
    zoo = pytest.importorskip("torch_hetero.tools.model_zoo").build("convnext")
    inputs = [torch.randn(b, 3, s, s) for b, s in ((2, 64), (3, 32))]
    outputs, _ = _run(zoo.model, inputs, {}, speedup, monkeypatch, dynamic=True)
    with torch.no_grad():
        for x, out in zip(inputs, outputs):
            expected = zoo.main_output(zoo.model(x))
            torch.testing.assert_close(zoo.main_output(out), expected, atol=1e-4, rtol=1e-4)


class SqueezeExcite(torch.nn.Module):
    """EfficientNet's gate: 1x1 convolutions of the pooled 1x1 map, then a channel scale."""

    def __init__(self, channels=32, squeezed=8):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, channels, 3, padding=1)
        self.reduce = torch.nn.Conv2d(channels, squeezed, 1)
        self.expand = torch.nn.Conv2d(squeezed, channels, 1, bias=False)

    def forward(self, x):
        x = torch.nn.functional.silu(self.conv(x))
        gate = torch.sigmoid(self.expand(torch.nn.functional.silu(self.reduce(x.mean((2, 3), keepdim=True)))))
        return x * gate


@pytest.mark.parametrize("freeze", [False, True], ids=["parameters", "frozen"])
def test_convolutions_of_1x1_maps_run_as_gemms(freeze):
    """A oneDNN call creates its primitive each time (about 60 µs, measured) and ATen's own
    kernel for a 1x1 map is unvectorized: a GEMM it is, and it runs as one."""
    torch.manual_seed(0)
    model, x = SqueezeExcite().eval(), torch.randn(2, 3, 12, 12)
    (out,), graphs = _run(model, [x], {"freeze": freeze})
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
    assert "2 convolutions with kernels the size of their maps run as GEMMs" in graphs[0][1].plan.notes
    code = _wrapper(graphs)
    assert code.count("addmm") == 1 and code.count(".mm.") == 1
    assert code.count("convolution") == 1, code   # the 3x3 one


@pytest.mark.parametrize("freeze", [False, True], ids=["parameters", "frozen"])
def test_a_kernel_covering_its_map_runs_as_a_gemm(freeze):
    """VGG's head: a 7x7 convolution of the 7x7 pooled map is a linear layer over the flattened
    map; as a convolution its channels-last weight (411 MB in vgg11) was converted every call."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(5),
                                torch.nn.Conv2d(8, 16, 5), torch.nn.ReLU()).eval()
    x = torch.randn(2, 3, 9, 9)
    (out,), graphs = _run(model, [x], {"freeze": freeze})
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
    assert "1 convolutions with kernels the size of their maps run as GEMMs" in graphs[0][1].plan.notes
    assert _wrapper(graphs).count("convolution") == 1   # the 3x3 one


def test_frozen_linear_layers_use_packed_weights():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 16)).eval()
    x = torch.randn(8, 32)
    (out,), graphs = _run(model, [x], {"freeze": True})
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
    assert _wrapper(graphs).count("torch.ops.mkl._mkl_linear.default") == (2 if onednn.MKL else 0)


class Conv1D(torch.nn.Module):
    """GPT-2's linear layer: the weight stored [in, out], multiplied as stored (addmm(b, x, W))."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_in, n_out) * 0.1)
        self.bias = torch.nn.Parameter(torch.randn(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.view(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


def test_frozen_weights_stored_in_by_out_are_packed_too():
    """A constant multiplied as stored ([K, N], GPT-2's Conv1D) is packed from its transpose."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(Conv1D(32, 64), torch.nn.GELU(), Conv1D(64, 16)).eval()
    x = torch.randn(2, 4, 32)
    (out,), graphs = _run(model, [x], {"freeze": True})
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
    assert _wrapper(graphs).count("torch.ops.mkl._mkl_linear.default") == (2 if onednn.MKL else 0)


def test_freeze_reads_parameters_once_and_refuses_others():
    """Frozen values are those of the first call; another instance of the module, whose
    parameters the compiled code would be handed instead, raises."""
    model, x = _model(), torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        expected = model(x)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="hetero", options={"freeze": True})
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), expected, atol=2e-5, rtol=2e-5)
        other = _model()
        for p in other.parameters():
            p.data.mul_(2)
        with pytest.raises(HeteroCompileError, match="freeze=True was called with other parameters"):
            torch.compile(other, backend="hetero", options={"freeze": True})(x)


def test_freeze_leaves_training_graphs_alone():
    model = _model().train()
    x = torch.randn(2, 3, 20, 20)
    reference = _model().train()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="hetero", options={"freeze": True, "strict": True})
    compiled(x).square().mean().backward()
    reference(x).square().mean().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)


def _traced(fn, *inputs) -> torch.fx.GraphModule:
    from torch.fx.experimental.proxy_tensor import make_fx
    return make_fx(fn, tracing_mode="fake")(*inputs)


def test_padding_folds_only_where_equivalent():
    def symmetric(x, weight):
        return torch.conv2d(torch.nn.functional.pad(x, [1, 1, 2, 2]), weight)

    def asymmetric(x, weight):   # TensorFlow "same" before a stride-2 convolution: no convolution padding
        return torch.conv2d(torch.nn.functional.pad(x, [0, 1, 0, 1]), weight, stride=2)

    def also_read(x, weight):
        padded = torch.nn.functional.pad(x, [1, 1, 1, 1])
        return torch.conv2d(padded, weight), padded

    x, weight = torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3)
    folded = fold_padding(_traced(symmetric, x, weight))
    conv = next(n for n in folded.graph.nodes if n.target is torch.ops.aten.convolution.default)
    assert list(conv.args[4]) == [2, 1]
    assert not any(n.target is torch.ops.aten.constant_pad_nd.default for n in folded.graph.nodes)
    torch.testing.assert_close(folded(x, weight), symmetric(x, weight))
    for fn in (asymmetric, also_read):
        gm = _traced(fn, x, weight)
        assert fold_padding(gm) is gm


def test_freeze_option_from_the_environment(monkeypatch):
    from torch_hetero import options
    monkeypatch.setenv("TORCH_HETERO_FREEZE", "1")
    assert options.resolve().freeze
    monkeypatch.setenv("TORCH_HETERO_FREEZE", "frozen")
    with pytest.raises(HeteroCompileError, match="TORCH_HETERO_FREEZE='frozen' is not a boolean"):
        options.resolve()
