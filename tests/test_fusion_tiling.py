"""Fusion and tiling: properties over every profile and a sweep of shapes, plus what fusion
buys on real blocks."""
import itertools

import pytest
import torch
import torch.nn.functional as F

import torch_hetero
from torch_hetero.backend import collect_compiled_graphs, hetero_backend
from torch_hetero.device_models import get_profile
from torch_hetero.planning.tiling import VECTOR_MATMUL_TILE, plan_matmul
from torch_hetero.tools.examples import Block, TinyGPT
from utils import check, compile_hetero

PROFILES = ["a100", "h100", "h200", "mi300x", "mtia-v1", "mtia-v2", "rivos-sim", "cpu"]
SIZES = [1, 7, 64, 100, 512, 4096]


@pytest.mark.parametrize("name", PROFILES)
def test_matmul_tiles_are_instruction_multiples_that_fit_local_sram(name):
    profile = get_profile(name)
    for (m, n, k), dtype in itertools.product(itertools.product(SIZES, repeat=3),
                                              [torch.bfloat16, torch.float16, torch.float32]):
        tile = plan_matmul(1, m, n, k, dtype, profile)
        if profile.codegen == "cpp":
            assert tile is None  # the host runs ATen's GEMM
            continue
        shape = profile.matrix_shapes.get({torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype), VECTOR_MATMUL_TILE)
        assert (tile.bm % shape[0], tile.bn % shape[1], tile.bk % shape[2]) == (0, 0, 0), (m, n, k, dtype, tile)
        assert tile.smem == (tile.bm * tile.bk + tile.bk * tile.bn) * dtype.itemsize * tile.stages
        assert tile.smem <= profile.local_sram_bytes
        assert 0 <= tile.padding < 1


def kernels_for(fn, inputs, device):
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=lambda gm, ex: hetero_backend(gm, ex, options={"device": device}))
    with torch.no_grad(), collect_compiled_graphs() as graphs:
        out = compiled(*inputs)
    with torch.no_grad():
        torch.testing.assert_close(out, fn(*inputs), rtol=1e-4, atol=1e-4)
    return [k for _, graph, _ in graphs for k in graph.plan.kernels]


CASES = [
    ("softmax", lambda x: x.softmax(-1), [(256, 64), (16, 4096), (4, 100000), (3, 5, 77)]),
    ("layer_norm", lambda x: F.layer_norm(x, x.shape[-1:]), [(128, 768), (8, 30000), (2, 3, 5)]),
    ("sum_then_scale", lambda x: x * x.sum(-1, keepdim=True) + x.amax(0), [(64, 33), (512, 512)]),
    ("chain", lambda x: (x.exp() + 1).log().relu() * 2, [(4096,), (33, 65), (2, 3, 4, 5)]),
]


@pytest.mark.parametrize("name", PROFILES)
@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_every_fused_kernel_fits_and_matches_eager(name, case):
    """Results match eager for every profile's plan, and each kernel's tile fits local SRAM
    (looped reductions step through rows that do not)."""
    _, fn, shapes = next(c for c in CASES if c[0] == case)
    profile = get_profile(name)
    torch.manual_seed(0)
    for shape in shapes:
        for kernel in kernels_for(fn, (torch.randn(shape),), name):
            assert kernel.tiling.working_set <= profile.local_sram_bytes, (shape, kernel.tiling)
            one_pass = kernel.cost.row_bytes <= profile.local_sram_bytes
            if kernel.tiling.strategy != "pointwise":
                assert kernel.tiling.strategy == ("one-pass" if one_pass else "looped")


def test_fusion_refuses_to_read_other_rows():
    """A column sum after a row-wise op cannot share the row loop: kept apart, with the reason."""
    kernels = kernels_for(lambda x: (x.softmax(-1) * 2).sum(0), (torch.randn(64, 48),), "cpu")
    reasons = [d for k in kernels for d in k.group.decisions if "not fused" in d or "runs alone" in d]
    assert len(kernels) >= 2 and reasons


def test_softmax_and_layer_norm_are_one_kernel_each():
    for fn, shape in ((lambda x: x.softmax(-1), (512, 1024)), (lambda x: F.layer_norm(x, (768,)), (512, 768))):
        for name in ("cpu", "h100", "mtia-v2"):
            [kernel] = kernels_for(fn, (torch.randn(shape),), name)
            assert kernel.group.local  # the row statistics stay in registers


@pytest.mark.parametrize("model, example", [(Block(128, 4), torch.randn(2, 32, 128)),
                                            (TinyGPT(), torch.randint(0, 512, (2, 32)))])
def test_fusion_reduces_kernel_count_of_transformer_blocks(model, example):
    kernels = kernels_for(model, (example,), "cpu")
    nodes = sum(len(k.group.nodes) for k in kernels)
    assert len(kernels) <= 0.6 * nodes, (len(kernels), nodes)


def test_explain_shows_tiling_and_fusion_reasons():
    report = torch_hetero.explain(lambda x: x.softmax(-1), torch.randn(64, 128), device="h100")
    [kernel] = report.kernels
    assert kernel.tiling.startswith("one-pass XBLOCK=")
    assert any("fused: reads" in d for d in kernel.fusion)
    assert "one-pass" in str(report) and "kernel0: buf0 (local)" in report.schedule


def _peak_bytes(fn, *args) -> int:
    """Peak of live CPU allocations during one call, from the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn(*args)
    events = sorted((e for e in prof.events() if e.cpu_memory_usage), key=lambda e: e.time_range.start)
    live = peak = 0
    for event in events:
        live += event.cpu_memory_usage
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("model, example", [(Block(256, 4).eval(), torch.randn(4, 128, 256)),
                                            (TinyGPT().eval(), torch.randint(0, 512, (4, 64)))])
def test_peak_memory_not_worse_than_eager(model, example):
    compiled = torch.compile(model, backend="hetero")
    with torch.no_grad():
        compiled(example)
        assert 0 < _peak_bytes(compiled, example) <= _peak_bytes(model, example)


@pytest.mark.parametrize("fn,make_input", [
    pytest.param(lambda x: x.sum(0), lambda: torch.randn(256, 300), id="sum_rows"),
    pytest.param(lambda x: x.mean(0), lambda: torch.randn(100, 70).bfloat16(), id="mean_rows_bf16"),
    pytest.param(lambda x: x.amin(0), lambda: torch.where(torch.rand(40, 65) > 0.9, float("nan"), torch.randn(40, 65)),
                 id="amin_rows_nan"),
    pytest.param(lambda x: x.sum((0, 1)), lambda: torch.randn(4, 33, 129), id="sum_two_leading_dims"),
    pytest.param(lambda x: x.sum(1), lambda: torch.randn(4, 33, 129), id="sum_middle_dim"),
    pytest.param(lambda x: x.var(0), lambda: torch.randn(64, 96), id="var_rows"),
])
def test_column_reductions_vectorize_over_outputs(fn, make_input):
    """A reduction along a strided dim (bias gradients, batch statistics) runs row by row
    with one accumulator per output, vectorized across outputs — not one strided walk per output."""
    x = make_input()
    torch._dynamo.reset()
    expected = fn(x)
    with collect_compiled_graphs() as graphs:
        actual = compile_hetero(fn, native=True)(x)
    torch.testing.assert_close(actual.float(), expected.float(), atol=1e-4, rtol=1e-3, equal_nan=True)
    columns = [k for _, g, _ in graphs for p, k in zip(g.plan.kernels, g.kernels) if p.group.column]
    assert columns and all("acc[ij0]" in k.source for k in columns)
    report = torch_hetero.explain(fn, x)
    assert "a column reduction runs alone" in report.schedule


def test_transposed_outputs_are_written_along_memory():
    """A pointwise value realized transposed (a matmul input in eager's layout) iterates its
    buffer in memory order: the innermost loop walks stride 1."""
    fn = lambda x, w: torch.mm((x * 2).exp().t(), w)  # noqa: E731
    x, w = torch.randn(96, 64), torch.randn(96, 32)
    torch._dynamo.reset()
    with collect_compiled_graphs() as graphs:
        actual = compile_hetero(fn, native=True)(x, w)
    torch.testing.assert_close(actual, fn(x, w), atol=1e-4, rtol=1e-4)
    (kernel,) = [k for _, g, _ in graphs for k in g.kernels]
    assert "[64 * i0 + x0]" in kernel.source, kernel.source


def test_costly_values_are_computed_once_not_per_broadcast_copy():
    """Rotary embeddings: cos/sin of (position, dim) broadcast over batch and heads are
    computed once into memory, not once per copy; a row statistic broadcast along its own row
    stays inlined (the inner loop hoists it)."""
    def rotary(x, freqs):
        angles = torch.cat((freqs, freqs), -1)
        return x * angles.cos() + x.flip(-1) * angles.sin()
    x, freqs = torch.randn(2, 4, 16, 8), torch.randn(16, 4)
    torch._dynamo.reset()
    with collect_compiled_graphs() as graphs:
        actual = compile_hetero(rotary, native=True)(x, freqs)
    torch.testing.assert_close(actual, rotary(x, freqs))
    kernels = [k for _, g, _ in graphs for k in g.kernels]
    trig = [k for k in kernels if "hetero_cosf" in k.source or "hetero_sinf" in k.source]
    assert trig and all("i2" not in k.source for k in trig), [k.source for k in kernels]  # 2-d loops only
    [kernel] = kernels_for(lambda v: F.layer_norm(v, (64,)), (torch.randn(32, 64),), "cpu")
    assert kernel.group.local


def _host_kernels(fn, *inputs):
    torch._dynamo.reset()
    with collect_compiled_graphs() as graphs:
        actual = compile_hetero(fn, native=True)(*inputs)
    torch.testing.assert_close(actual, fn(*inputs), atol=1e-4, rtol=1e-4)
    return [k for _, g, _ in graphs for k in g.kernels], graphs


@pytest.mark.parametrize("fn", [
    pytest.param(lambda x, w: (lambda g: (g.sum(0), g.amax(-1)))(F.gelu(x)), id="two_kernels"),
    pytest.param(lambda x, w: (lambda g: (g @ w, g.sum(0)))(F.gelu(x).view(-1, 32)), id="readers_of_a_view"),
])
def test_a_shared_gelu_is_computed_once(fn):
    """A libm call makes a value worth its memory traffic: a GELU read by a matmul and a
    reduction (directly, or through a view, as in a ViT backward) is computed once, not per reader."""
    kernels, _ = _host_kernels(lambda x, w: fn(x, w), torch.randn(64, 32), torch.randn(32, 16))
    assert sum("hetero_gelu" in k.source for k in kernels) == 1, [k.source for k in kernels]


def test_a_transposed_read_shared_by_two_kernels_is_done_once():
    """Reading a buffer across its memory order costs a cache line per element: a value
    inlining such a read is realized once when several kernels read it."""
    def fn(x):
        t = x.t() + 1
        return t.sum(-1), t * 2
    kernels, _ = _host_kernels(fn, torch.randn(48, 64))
    loads = sum(k.source.count("arg0[") for k in kernels)   # x, read along its columns
    assert loads == 1, [k.source for k in kernels]


def test_inputs_are_freed_after_their_last_use():
    """The wrapper clears AOTAutograd's argument list and drops each input after its last
    reader, so a backward frees saved activations as it goes."""
    def fn(x, y):
        return (x.sin() @ y).cos()
    _, graphs = _host_kernels(fn, torch.randn(16, 16), torch.randn(16, 16))
    lines = [line.strip() for line in graphs[0][1].code["inference.py"].splitlines()]
    start = lines.index("def call(args):")   # after the buffers kept between calls, if any
    assert lines[start + 2] == "args.clear()  # boxed call: the inputs are ours to free after their last use"
    after = {line.split("(")[0]: following for line, following in zip(lines, lines[1:])}
    assert after["kernel0"] == "del arg0" and after["buf1 = torch.ops.aten.mm.default"] == "del arg1, buf0", lines


def test_layer_norm_weight_gradient_is_a_column_reduction():
    """sum over rows of grad * (x - mean) * rstd: the per-row mean and rstd do not stop the
    kernel from walking rows outside and 64 outputs inside, vectorized."""
    norm = torch.nn.LayerNorm(96)
    x = torch.randn(4, 33, 96, requires_grad=True)
    check(norm, x, grad=True, native=True)
    torch._dynamo.reset()
    with collect_compiled_graphs() as graphs:
        torch.compile(norm, backend="hetero")(x).sum().backward()
    [backward] = [g for kind, g, _ in graphs if kind == "backward"]
    per_feature = [(p, k) for p, k in zip(backward.plan.kernels, backward.kernels)
                   if any(tuple(n.layout.size) == (96,) for n in p.group.nodes)]
    assert len(per_feature) == 2, [k.source for k in backward.kernels]   # weight and bias gradients
    assert all(p.group.column and "acc[ij0]" in k.source for p, k in per_feature), [k.source for _, k in per_feature]


def test_a_view_across_heads_splits_the_host_loop_instead_of_dividing():
    """Heads transposed back and flattened (attention's output, LLaMA's gradients): the load
    reaches the flat index through // 64 and % 64; the host loop is split in two (4 x 64), so
    every index is affine and the inner loop vectorizes."""
    kernels, _ = _host_kernels(lambda x: x.transpose(1, 2).reshape(2, 16, 256) * 2, torch.randn(2, 4, 16, 64))
    source = kernels[0].source
    assert "x0 < 4" in source and "x1 < 64" in source, source
    assert "/ 64" not in source and "% 64" not in source, source


def test_a_stored_reduction_is_not_reloaded_by_its_kernel():
    """A reduction that is both an output (a norm's saved statistics) and read by the rest of
    its kernel: the later loop reads a variable; a load of the stored value kept g++ from
    vectorizing it."""
    x = torch.randn(8, 256)
    kernels, _ = _host_kernels(lambda x: (lambda m: (m, x / m))(x.abs().amax(-1, keepdim=True)), x)
    assert len(kernels) == 1 and "buf0_value" in kernels[0].source, kernels[0].source
    assert kernels[0].source.count("buf0[") == 1, kernels[0].source


def test_a_saved_activation_is_computed_where_it_is_produced():
    """In training, the forward graph returns the tanh for its backward and also sums it: the
    tanh is computed once, in the summing kernel, not again by a kernel of its own at the end."""
    x = torch.randn(64, 128, requires_grad=True)
    with collect_compiled_graphs() as graphs:
        compile_hetero(lambda x: (x * 2).tanh().sum(-1), native=True)(x).sum().backward()
    forward = next(g for kind, g, _ in graphs if kind == "forward")
    assert len(forward.kernels) == 1, [k.source for k in forward.kernels]
    assert forward.kernels[0].source.count("hetero_tanhf") == 1, forward.kernels[0].source
    torch.testing.assert_close(x.grad, 2 * (1 - (x.detach() * 2).tanh() ** 2))


def test_cross_entropy_backward_is_one_kernel_without_a_scatter():
    """nll_loss's backward scatters one value per row into zeros: lowered as a select, it fuses
    with log_softmax's backward into one kernel (no zero-filled copy, no serial scatter)."""
    x = torch.randn(64, 300, requires_grad=True)
    target = torch.randint(0, 300, (64,))
    target[3] = -100    # ignored

    def fn(x, t):
        return F.cross_entropy(x, t)
    torch._dynamo.reset()
    with collect_compiled_graphs() as graphs:
        compile_hetero(fn, native=True)(x, target).backward()
    grad, x.grad = x.grad, None
    fn(x, target).backward()
    torch.testing.assert_close(grad, x.grad)
    backward = next(g for kind, g, _ in graphs if kind == "backward")
    assert len(backward.kernels) == 1, [k.source for k in backward.kernels]
