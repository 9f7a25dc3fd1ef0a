"""The generated flash attention (codegen/triton_attention.py) on a profile without an attention
library: forward and gradients against eager under Triton's interpreter, at sequence lengths
around the plan's blocks, 16-bit dtypes, head dims, causal, boolean (with a fully masked row)
and additive masks, GQA and an empty batch; the same plan on the host executor; one kernel
each way, never an [L, S] buffer; tiles that follow the profile's local SRAM."""
import dataclasses
import operator

import pytest
import torch
import torch.nn.functional as F

from torch_hetero.device_models import get_profile
from torch_hetero.ir import AttentionShape
from torch_hetero.planning.tiling import plan_attention
from torch_hetero.tools.report import compile_and_run
from utils import check, compile_hetero, planned_kernels, profile_variant

INTERPRET = {"device": "rivos-sim", "executor": "interpret"}
HOST = {"device": "rivos-sim", "executor": "host"}
BLOCK = 16   # BR = BC on rivos-sim for these tiny shapes (test_tiny_shapes_take_the_smallest_tile)


def _qkv(batch=1, heads=2, queries=5, keys=None, dim=16, kv_heads=None, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    keys, kv_heads = keys or queries, kv_heads or heads
    return tuple(torch.randn(batch, h, n, dim, generator=gen).to(dtype)
                 for h, n in ((heads, queries), (kv_heads, keys), (kv_heads, keys)))


def _sdpa(**kwargs):
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kwargs)


def test_tiny_shapes_take_the_smallest_tile():
    _, kernels = planned_kernels(_sdpa(), _qkv(), INTERPRET)
    (kernel,) = kernels
    assert (kernel.attention_tile.br, kernel.attention_tile.bc) == (BLOCK, BLOCK)


@pytest.mark.parametrize("queries,keys", [(1, BLOCK + 1), (BLOCK - 1, BLOCK), (BLOCK + 1, 2 * BLOCK + 3)])
def test_sequence_lengths_around_the_blocks(queries, keys):
    check(_sdpa(), *_qkv(queries=queries, keys=keys), grad=True, options=INTERPRET, native=True)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float16, 5e-3)])
def test_half_precision(dtype, tol):
    """P and dS meet the matrix units in the input dtype (as FlashAttention), eager keeps fp32."""
    check(_sdpa(is_causal=True), *_qkv(queries=9, dim=32, dtype=dtype), grad=True, atol=tol, rtol=tol,
          options=INTERPRET, native=True)


@pytest.mark.parametrize("dim", [8, 32, 64, 128])
def test_head_dims(dim):
    check(_sdpa(), *_qkv(heads=1, queries=3, keys=4, dim=dim), grad=dim <= 32, options=INTERPRET, native=True)


def test_causal_with_more_keys_than_queries():
    check(_sdpa(is_causal=True, scale=0.3), *_qkv(queries=6, keys=BLOCK + 4), grad=True, options=INTERPRET,
          native=True)


def test_boolean_mask_with_a_fully_masked_row():
    """A query no key may see gives 0 (as eager's SDPA on CPU), and no NaN reaches the gradients."""
    mask = torch.rand(5, 7, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[2] = False
    check(_sdpa(attn_mask=mask), *_qkv(queries=5, keys=7), grad=True, options=INTERPRET, native=True)


def test_additive_mask_broadcast_over_heads():
    mask = torch.randn(2, 1, 5, 7, generator=torch.Generator().manual_seed(2))
    check(_sdpa(attn_mask=mask), *_qkv(batch=2, queries=5, keys=7), grad=True, options=INTERPRET, native=True)


def test_grouped_query_attention_reads_shared_kv_heads():
    check(_sdpa(is_causal=True, enable_gqa=True), *_qkv(heads=4, kv_heads=2, queries=5), grad=True,
          options=INTERPRET, native=True)


def test_empty_batch():
    check(_sdpa(), *_qkv(batch=0), options=INTERPRET, native=True)


def test_host_executor_runs_the_same_plan():
    mask = torch.randn(5, 7, generator=torch.Generator().manual_seed(3))
    check(_sdpa(attn_mask=mask), *_qkv(queries=5, keys=7), grad=True, options=HOST, native=True)


def test_one_kernel_and_no_score_matrix():
    queries, keys = 5, 7
    _, kernels = planned_kernels(_sdpa(is_causal=True), _qkv(queries=queries, keys=keys), INTERPRET)
    (kernel,) = kernels
    assert kernel.attention_tile is not None and kernel.group.matmul.name == "aten.scaled_dot_product_attention.default"
    for buffer in kernel.buffers:
        assert tuple(buffer.layout.size[-2:]) != (queries, keys)


def test_long_rows_plan_by_local_sram():
    """On long rows MTIA-class local memory holds larger blocks than a GPU's shared memory."""
    shape = AttentionShape(1, 8, 8, 4096, 4096, 64, torch.bfloat16, causal=False, backward=False)
    tiles = {name: plan_attention(shape, get_profile(name)) for name in ("mtia-v2", "rivos-sim", "h100")}
    for name, tile in tiles.items():
        assert tile.smem <= get_profile(name).local_sram_bytes, (name, tile)
    assert (tiles["mtia-v2"].br, tiles["mtia-v2"].bc) != (tiles["h100"].br, tiles["h100"].bc), tiles
    assert tiles["mtia-v2"].br * tiles["mtia-v2"].bc > tiles["h100"].br * tiles["h100"].bc, tiles


@pytest.mark.parametrize("target", ["cuda:90", "hip:gfx942"])
def test_builds_ahead_of_time(target):
    """The forward and the backward kernel (bf16, GQA, a mask) compile for a GPU without one,
    within its shared memory."""
    from torch_hetero.backend import collect_compiled_graphs, hetero_backend
    from torch_hetero.runtime import triton_run
    torch._dynamo.reset()
    q, k, v = (t.requires_grad_() for t in _qkv(heads=4, kv_heads=2, queries=64, dim=64, dtype=torch.bfloat16))
    mask = torch.randn(64, 64, dtype=torch.bfloat16)
    options = {"device": "rivos-sim", "strict": True}
    compiled = torch.compile(_sdpa(attn_mask=mask, enable_gqa=True),
                             backend=lambda gm, example: hetero_backend(gm, example, options=options))
    with collect_compiled_graphs() as graphs:
        compiled(q, k, v).sum().backward()
    built = []
    for kind, graph, _ in graphs:
        module = triton_run.load_module(graph.code[f"{kind}.triton.py"], interpret=False)
        for kernel in graph.rendered["triton"]:
            result = triton_run.aot_compile(getattr(module, kernel.name), kernel.signature, kernel.constexprs, target)
            assert result.metadata.shared <= get_profile("h100" if target.startswith("cuda") else "mi300x").local_sram_bytes
            built += kernel.origins
    assert built == ["aten.scaled_dot_product_attention", "aten.scaled_dot_product_attention_backward"]


def _no_attention_library(tmp_path, profile: str) -> str:
    """``profile`` declaring no attention library: its attention is our kernel, in its GPU tiles."""
    return profile_variant(tmp_path, profile, f"{profile}-own-attention",
                           ('attention = ["flash attention", "cuDNN"]', "attention = []"),
                           ("attention_efficiency = 0.45\n", ""))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("dim", [64, 128])
def test_gpu_attention_tiles_build_without_spills(tmp_path, dtype, dim):
    """Every (BR, BC, warps) of ``tiling.GPU_ATTENTION_TILES`` for this dtype and head dim, forward
    and backward, builds for cuda:90 with no spill (registers read from the binary); the plan
    on a GPU profile takes one of them, with its warps in the launch."""
    from torch_hetero.planning.tiling import GPU_ATTENTION_TILES
    from torch_hetero.runtime import triton_run
    q, k, v = (t.requires_grad_() for t in _qkv(batch=2, heads=4, queries=200, dim=dim, dtype=dtype))
    graphs = compile_and_run(lambda q, k, v: _sdpa(is_causal=True)(q, k, v).sum().backward(), (q, k, v), {},
                             {"device": _no_attention_library(tmp_path, "h100")})
    built = 0
    for kind, graph, _ in graphs:
        [kernel] = [k for k in graph.rendered["triton"] if "BR" in k.constexprs]
        tile = next(p.attention_tile for p in graph.plan.kernels if p.name == kernel.name)
        tiles = GPU_ATTENTION_TILES[("fp32" if dtype == torch.float32 else "16-bit", kind == "backward", dim)]
        assert (tile.br, tile.bc, tile.warps) in tiles and f"num_warps={tile.warps}" in kernel.launch()[-1]
        source = graph.code[f"{kind}.triton.py"]
        for br, bc, warps in tiles:
            candidate = dataclasses.replace(kernel, constexprs={**kernel.constexprs, "BR": br, "BC": bc},
                                            launch_options=(("num_warps", warps),))
            [resources] = triton_run.compile_ahead(source, [candidate], "cuda:90").values()
            assert not resources.problems(get_profile("h100").local_sram_bytes), (kind, br, bc, warps, resources)
            built += 1
    assert built == sum(len(GPU_ATTENTION_TILES.get((c, b, dim), ())) for c in
                        ["fp32" if dtype == torch.float32 else "16-bit"] for b in (False, True))


def _explicit(q, k, v, mask):
    scores = (q @ k.transpose(-1, -2)) / 4.0 + mask
    return scores.softmax(-1) @ v


def _explicit_scores_kept(q, k, v, mask):
    scores = (q @ k.transpose(-1, -2)) / 4.0 + mask
    return scores.softmax(-1) @ v, scores.sum()   # the scores are read outside the pattern


def _explicit_over_queries(q, k, v, mask):
    scores = (q @ k.transpose(-1, -2)) / 4.0 + mask
    return scores.softmax(-2) @ v                 # not a softmax over the keys


def test_explicit_attention_becomes_the_kernel():
    inputs = (*_qkv(batch=2, queries=6, keys=6), torch.randn(6, 6, generator=torch.Generator().manual_seed(4)))
    _, kernels = planned_kernels(_explicit, inputs, INTERPRET)
    assert [k.group.matmul.name for k in kernels] == ["aten.scaled_dot_product_attention.default"]
    check(_explicit, *inputs, options=INTERPRET, native=True)


@pytest.mark.parametrize("fn", [_explicit_scores_kept, _explicit_over_queries])
def test_explicit_attention_outside_the_pattern_is_unchanged(fn):
    inputs = (*_qkv(batch=2, queries=6, keys=6), torch.randn(6, 6, generator=torch.Generator().manual_seed(4)))
    _, kernels = planned_kernels(fn, inputs, HOST)
    ops = [k.group.matmul.name for k in kernels if k.group.matmul is not None]
    assert ops == ["aten.bmm.default", "aten.bmm.default"], ops
    check(fn, *inputs, options=HOST, native=True)


def _repeat_kv(x, repeats):
    """LLaMA's repeat_kv: each KV head copied for the query heads that share it."""
    batch, heads, keys, dim = x.shape
    return x[:, :, None].expand(batch, heads, repeats, keys, dim).reshape(batch, heads * repeats, keys, dim)


def test_repeated_kv_heads_are_read_not_copied():
    def llama_style(q, k, v):
        return F.scaled_dot_product_attention(q, _repeat_kv(k, 2), _repeat_kv(v, 2), is_causal=True)
    inputs = _qkv(heads=4, kv_heads=2, queries=5)
    _, kernels = planned_kernels(llama_style, inputs, INTERPRET)
    (kernel,) = kernels
    assert kernel.group.matmul.attention_shape({}).kv_heads == 2
    check(llama_style, *inputs, options=INTERPRET, native=True)
    check(llama_style, *inputs, grad=True, options=INTERPRET, native=True)   # training keeps its copies


def test_dynamic_shapes_check_the_planned_head_dim():
    """Symbolic sizes: a head dim is planned at its hint (its block, BD) and each launch checks it."""
    check(_sdpa(is_causal=True), *_qkv(queries=5, keys=7, dim=8), dynamic=True, grad=True, options=INTERPRET,
          native=True)
    compiled = compile_hetero(_sdpa(), dynamic=True, options=INTERPRET, native=True)
    compiled(*_qkv(queries=3, dim=8))
    with pytest.raises(AssertionError, match="planned for head dims up to 16"):
        compiled(*_qkv(queries=3, dim=32))


def test_every_bf16_rounding_goes_through_the_prelude():
    """P, dS and the stored outputs reach bfloat16 through ``_to_bf16`` (``triton_ops.narrow``),
    which rounds to nearest even under the interpreter too; a plain ``.to(tl.bfloat16)`` there
    truncates, and the interpreter's gradients drift from eager's by twice its rounding."""
    q, k, v = (t.requires_grad_() for t in _qkv(queries=9, dim=32, dtype=torch.bfloat16))
    graphs = compile_and_run(lambda q, k, v: _sdpa(is_causal=True)(q, k, v).sum().backward(), (q, k, v), {},
                             {"device": "rivos-sim"})
    sources = [code for _, graph, _ in graphs for name, code in graph.code.items() if name.endswith(".triton.py")]
    assert len(sources) == 2 and all("_to_bf16(" in s for s in sources)
    assert not any(".to(tl.bfloat16)" in s[s.index("def kernel"):] for s in sources)


def _gpu_traced_sdpa(op, tail: tuple, read: tuple = (0,)):
    """SDPA as AOTAutograd traces it on GPU inputs (``ir.DEVICE_ATTENTIONS``), built as an FX
    graph over fake CPU tensors (the ops' meta kernels): its outputs ``read`` are returned."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp
    graph = torch.fx.Graph()
    q, k, v = (graph.placeholder(name) for name in "qkv")
    call = graph.call_function(op, (q, k, v, *tail), {"scale": 0.3})
    graph.output(tuple(graph.call_function(operator.getitem, (call, i)) for i in read))
    gm = torch.fx.GraphModule({}, graph)
    mode = FakeTensorMode()
    with mode:  # [B, H, L, D] as a model's heads are: a transposed [B, L, H, D]
        FakeTensorProp(gm, mode).propagate(*(torch.empty(2, 8, 3, 16).transpose(1, 2) for _ in range(3)))
    return gm


_ATEN = torch.ops.aten
GPU_SDPA = [(_ATEN._scaled_dot_product_flash_attention.default, (0.0, True)),
            (_ATEN._scaled_dot_product_efficient_attention.default, (None, False, 0.0, True)),
            (_ATEN._scaled_dot_product_cudnn_attention.default, (None, False, 0.0, True))]


@pytest.mark.parametrize("op, tail", GPU_SDPA, ids=lambda x: str(x).split(".")[1] if not isinstance(x, tuple) else "")
def test_sdpa_traced_on_a_gpu_becomes_the_fused_op(op, tail):
    from torch_hetero.lowering.attention_pattern import FUSED, rewrite_attention
    rewritten = rewrite_attention(_gpu_traced_sdpa(op, tail))
    assert [n.target for n in rewritten.graph.nodes if n.op == "call_function"][0] == FUSED
    q, k, v = (torch.randn(2, 8, 3, 16).transpose(1, 2) for _ in range(3))
    [out] = rewritten(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3))


@pytest.mark.parametrize("op, tail, read", [
    (GPU_SDPA[1][0], (None, True, 0.0, True), (0, 1)),     # its statistics read (a training graph saves them)
    (GPU_SDPA[0][0], (0.1, True), (0,)),                   # dropout
], ids=["statistics_read", "dropout"])
def test_sdpa_traced_on_a_gpu_stays_where_ours_differs(op, tail, read):
    from torch_hetero.lowering.attention_pattern import rewrite_attention
    gm = _gpu_traced_sdpa(op, tail, read)
    assert rewrite_attention(gm) is gm


def test_sdpa_traced_on_a_gpu_is_the_library_where_the_profile_declares_one():
    from torch_hetero.compiler import lower_graph
    from torch_hetero.options import resolve
    for op, tail in GPU_SDPA:
        graph, _ = lower_graph(_gpu_traced_sdpa(op, tail), resolve({"device": "h200"}))
        assert [(n.op, n.kind) for n in graph.nodes if hasattr(n, "kind")] == [(op, "extern")]


def test_a_mask_passed_to_a_gpu_attention_library_has_aligned_rows():
    """The memory-efficient kernel refuses a bias whose strides are not multiples of 16 bytes."""
    from torch_hetero.compiler import lower_graph
    from torch_hetero.options import resolve
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp
    graph = torch.fx.Graph()
    q, k, v, mask = (graph.placeholder(name) for name in ("q", "k", "v", "mask"))
    call = graph.call_function(_ATEN._scaled_dot_product_efficient_attention.default,
                               (q, k, v, graph.call_function(_ATEN.expand.default, (mask, [2, 3, 5, 6])), False))
    graph.output((graph.call_function(operator.getitem, (call, 0)),))
    gm = torch.fx.GraphModule({}, graph)
    mode = FakeTensorMode()
    with mode:
        FakeTensorProp(gm, mode).propagate(torch.empty(2, 3, 5, 4), torch.empty(2, 3, 6, 4), torch.empty(2, 3, 6, 4),
                                           torch.empty(5, 6))
    lowered, _ = lower_graph(gm, resolve({"device": "h200"}))
    [call] = [n for n in lowered.nodes if getattr(n, "kind", None) == "extern"]
    bias = call.args[3].buffer.layout
    assert [int(s) % 16 for s in bias.stride[:-1]] == [0, 0, 0] and int(bias.stride[-1]) == 1, bias
