"""Attention in forms the fused op can take more cheaply, rewritten in the ATen graph before
lowering so that a target without an attention library runs our flash attention on it
(``codegen.triton_attention``): one kernel, no [L, S] scores in memory, no copied KV heads.

1. Attention written out — ``softmax(q @ k^T * scale [+ mask]) @ v`` — becomes the fused op SDPA is
   traced as (``_scaled_dot_product_flash_attention_for_cpu``).  A match requires (anything
   else leaves the graph unchanged):
   * the traced form of the matmuls: ``view(bmm(view(expand(q)), view(expand(k^T))))`` where q,
     k, v are 4-d [B, H, L|S, D] with one B and H, each expand a no-op (no broadcast), k^T a
     transpose or permute of k's last two dims;
   * the scale a multiplication or division of the scores by a number (applied as a product,
     within one rounding of a division), then at most one added mask of the scores' dtype
     that broadcasts to [B, H, L, S];
   * the softmax as our decomposition traces it over the last dim: amax, sub, exp, sum, div,
     in the scores' dtype (a 16-bit softmax computes in fp32 through casts, which do not match);
   * every intermediate read only inside the pattern (a training graph saves the softmax for
     its backward, so it keeps its matmuls), and the output in the strides the fused op gives.
2. KV heads repeated for grouped-query attention (LLaMA's ``repeat_kv``:
   ``_unsafe_view(clone(expand(unsqueeze(x, 2))), [B, Hkv * n, S, D])``) as a fused op's key or
   value: the op reads x itself, query head h from KV head h // n (the fused op takes fewer KV
   heads), when both key and value are so repeated and each copy is read only by the op (in a
   training graph the copies are saved for the backward, so they stay).
3. SDPA traced on GPU inputs (``ir.DEVICE_ATTENTIONS``: the flash, memory-efficient or cuDNN
   kernel the dispatcher chose) becomes the fused op when only its output is read (an inference
   graph: a training graph saves the kernel's own statistics for its backward), without dropout,
   with a mask (if any) of the query's dtype, and the fused op gives the output its strides."""
from __future__ import annotations

import numbers
import operator

import torch

from ..ir import DEVICE_ATTENTIONS
from .common import RESHAPES, is_call
from .extern import generated_attention_problem

aten = torch.ops.aten
FUSED = aten._scaled_dot_product_flash_attention_for_cpu.default
_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def rewrite_attention(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``gm`` with both rewrites applied (a new module; ``gm`` itself is left as it is, for
    running eagerly if the compile fails), or ``gm`` if neither applies."""
    if not any(_match(node) or _shared_kv(node) or _device_fused(node) for node in gm.graph.nodes):
        return gm
    graph = torch.fx.Graph()
    graph.output(graph.graph_copy(gm.graph, {}))
    for node in list(graph.nodes):
        found = _match(node) or _device_fused(node)
        if found is not None:
            _replace(graph, node, *found)
    for node in list(graph.nodes):
        shared = _shared_kv(node)
        if shared is not None:
            node.args = (node.args[0], *shared, *node.args[3:])
    graph.eliminate_dead_code()
    for node in [n for n in graph.nodes if n.target in DEVICE_ATTENTIONS and not n.users]:
        graph.erase_node(node)  # seeded random kernels, which dead-code elimination keeps
    return torch.fx.GraphModule(gm, graph)


def _device_fused(out):
    """(q, k, v, mask, scale, causal) if ``out`` reads the output of SDPA traced on GPU inputs
    that the fused op computes alike (rewrite 3), else None."""
    call = out.args[0] if out.op == "call_function" and out.target is operator.getitem and out.args[1] == 0 else None
    if not isinstance(call, torch.fx.Node) or call.target not in DEVICE_ATTENTIONS or len(call.users) != 1:
        return None
    mask_at, dropout_at, causal_at = DEVICE_ATTENTIONS[call.target]
    args = list(call.args)
    given = lambda at, default: args[at] if at is not None and at < len(args) else default
    mask, dropout, causal = given(mask_at, None), given(dropout_at, 0.0), given(causal_at, False)
    q, k, v = args[:3]
    query, dim = q.meta["val"], q.meta["val"].shape[-1]
    if dropout or (mask is not None and mask.meta["val"].dtype != query.dtype) or generated_attention_problem(
            query.dtype, 0.0, dim if isinstance(dim, int) else dim.node.hint):  # else it runs its own kernel
        return None
    return _checked(out, q, k, v, mask, call.kwargs.get("scale"), causal)


def _shared_kv(node):
    """(k, v) with fewer heads for a fused op reading repeated KV heads, else None."""
    if not is_call(node, FUSED):
        return None
    shared = [_unrepeated(node.args[i]) for i in (1, 2)]
    return tuple(shared) if all(x is not None for x in shared) else None


def _unrepeated(node):
    """x for ``_unsafe_view(clone(expand(unsqueeze(x, 2), [B, Hkv, n, S, D])), [B, Hkv * n, S, D])``."""
    if not (is_call(node, *RESHAPES) and len(node.users) == 1):
        return None
    clone = _only_input(node, aten.clone.default)
    expand = _only_input(clone, aten.expand.default) if clone is not None else None
    unsqueeze = _only_input(expand, aten.unsqueeze.default) if expand is not None else None
    if unsqueeze is None or unsqueeze.args[1] != 2:
        return None
    x = unsqueeze.args[0]
    shape = list(x.meta["val"].shape) if isinstance(x, torch.fx.Node) else []
    if len(shape) != 4:
        return None
    batch, kv_heads, keys, dim = shape
    repeats = expand.args[1][2]
    if list(expand.args[1]) != [batch, kv_heads, repeats, keys, dim] or \
            list(node.args[1]) != [batch, kv_heads * repeats, keys, dim]:
        return None
    return x


def _match(out):
    """(q, k, v, mask, scale) if ``out`` ends the pattern, else None."""
    if not is_call(out, *RESHAPES):
        return None
    pv = _only_input(out, aten.bmm.default)
    if pv is None:
        return None
    probs, v = _batched(pv.args[0]), _batched(pv.args[1])
    if probs is None or v is None or not _single_use(pv.args[0], pv.args[1]):
        return None
    scores = _softmax_input(probs)
    if scores is None:
        return None
    scaled, mask = scores, None
    if is_call(scores, aten.add.Tensor) and isinstance(scores.args[1], torch.fx.Node):
        scaled, mask = scores.args
    scale, raw = _scale(scaled)
    qk = _only_input(raw, aten.bmm.default) if is_call(raw, *RESHAPES) else None
    if qk is None or not _single_use(*{n: None for n in (raw, scaled) if n is not scores}):
        return None
    q, kt = _batched(qk.args[0]), _batched(qk.args[1])
    k = _transposed(kt) if kt is not None else None
    if q is None or k is None or not _single_use(qk.args[0], qk.args[1]):
        return None
    return _checked(out, q, k, v, mask, scale)


def _checked(out, q, k, v, mask, scale, causal=False):
    qv, kv, vv, ov = (n.meta.get("val") for n in (q, k, v, out))
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in (qv, kv, vv, ov)):
        return None
    if qv.dtype not in _FLOATS or not (qv.dtype == kv.dtype == vv.dtype == ov.dtype):
        return None
    batch, heads, queries, dim = qv.shape
    if tuple(kv.shape) != (batch, heads, kv.shape[2], dim) or tuple(vv.shape) != tuple(kv.shape):
        return None
    if mask is not None:
        mv = mask.meta.get("val")
        target = (batch, heads, queries, kv.shape[2])
        if not isinstance(mv, torch.Tensor) or mv.dtype != qv.dtype or mv.dim() > 4 or any(
                size not in (1, full) for size, full in zip(reversed(mv.shape), reversed(target))):
            return None
    fused = _fused_values(q, k, v, mask, scale, causal)
    if fused is None or fused[0].stride() != ov.stride() or fused[0].shape != ov.shape:
        return None
    return q, k, v, mask, scale, causal


def _fused_values(q, k, v, mask, scale, causal):
    """The fused op's (output, logsumexp) metadata, computed in the graph's fake mode."""
    values = [n.meta["val"] for n in (q, k, v)]
    mode = torch._guards.detect_fake_mode(values)
    if mode is None:
        return None
    with mode:
        return FUSED(*values, 0.0, causal, attn_mask=mask.meta["val"] if mask is not None else None, scale=scale)


def _replace(graph: torch.fx.Graph, out, q, k, v, mask, scale, causal) -> None:
    with graph.inserting_before(out):
        fused = graph.call_function(FUSED, (q, k, v, 0.0, causal), {"attn_mask": mask, "scale": scale})
        first = graph.call_function(operator.getitem, (fused, 0))
    values = _fused_values(q, k, v, mask, scale, causal)
    meta = {key: value for key, value in out.meta.items() if key != "val"}
    fused.meta.update(meta, val=values)
    first.meta.update(meta, val=values[0])
    out.replace_all_uses_with(first)


def _only_input(node, *targets):
    """``node``'s first argument if it is one of ``targets`` read only by ``node``."""
    source = node.args[0] if node.args else None
    return source if is_call(source, *targets) and len(source.users) == 1 else None


def _single_use(*nodes) -> bool:
    return all(len(n.users) == 1 for n in nodes)


def _batched(node):
    """The 4-d tensor a bmm operand views: ``view(expand(x))`` with the expand a no-op."""
    if not is_call(node, *RESHAPES):
        return None
    expand = node.args[0]
    if is_call(expand, aten.expand.default) and len(expand.users) == 1:
        source = expand.args[0]
        if not isinstance(source, torch.fx.Node) or list(source.meta["val"].shape) != list(expand.args[1]):
            return None
        return source
    return expand if isinstance(expand, torch.fx.Node) and expand.meta["val"].dim() == 4 else None


def _transposed(node):
    """k for k^T: a transpose or permute of the last two dims."""
    if is_call(node, aten.transpose.int) and len(node.users) == 1 and sorted(d % 4 for d in node.args[1:3]) == [2, 3]:
        return node.args[0]
    if is_call(node, aten.permute.default) and len(node.users) == 1 and [d % 4 for d in node.args[1]] == [0, 1, 3, 2]:
        return node.args[0]
    return None


def _softmax_input(probs):
    """x for ``div(exp(x - amax(x)), sum(exp(x - amax(x))))`` over the last dim, keepdim."""
    if not is_call(probs, aten.div.Tensor) or not _single_use(probs):
        return None
    exp, total = probs.args
    if not (is_call(exp, aten.exp.default) and is_call(total, aten.sum.dim_IntList) and total.args[0] is exp
            and _last_dim_keepdim(total) and len(exp.users) == 2 and len(total.users) == 1):
        return None
    sub = exp.args[0]
    if not (is_call(sub, aten.sub.Tensor) and len(sub.users) == 1):
        return None
    x, amax = sub.args
    if not (is_call(amax, aten.amax.default) and amax.args[0] is x and _last_dim_keepdim(amax)
            and len(amax.users) == 1 and len(x.users) == 2):
        return None
    return x


def _last_dim_keepdim(node) -> bool:
    dims = node.args[1] if len(node.args) > 1 else None
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    return keepdim and list(dims or []) in ([-1], [3])


def _scale(node) -> tuple:
    """(scale, the unscaled scores) of ``node`` = scores * c or scores / c; (1.0, node) else."""
    if is_call(node, aten.mul.Tensor, aten.div.Tensor) and isinstance(node.args[1], numbers.Real) \
            and not isinstance(node.args[1], bool):
        c = float(node.args[1])
        if node.target is aten.div.Tensor:
            return (1.0 / c, node.args[0]) if c != 0 else (None, None)
        return c, node.args[0]
    return 1.0, node
