"""Models traced for the deployment planner without running them: the model and its inputs live
on the meta device (shapes and dtypes, no storage), TorchDynamo and AOTAutograd trace them with
our decompositions as ``torch.compile(backend="hetero")`` would, and the graphs are kept for
``compiler.plan_graph`` to plan and estimate on each profile.  So a model too large for this
host (a 70B LLM) is planned as readily as a small one.

A phase is what a deployment runs: ``train`` (forward and backward of a step), ``prefill`` (a
prompt of S tokens, the next token's logits only, as a server computes them) and ``decode`` (one token against a KV cache of S tokens; the model must
take Hugging Face's ``cache`` (``past_key_values`` before transformers 5), built by running the
prompt on the meta device first).  ``infer`` is a plain forward of a model that is not a language model."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import math
import time

import torch
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func
from torch._functorch.partitioners import min_cut_rematerialization_partition

from ..decompositions import decomposition_table
from ..errors import PlanError

PHASES = ("train", "prefill", "decode", "infer")
META = torch.device("meta")


@dataclasses.dataclass
class Captured:
    """One phase of a model traced at one (batch, sequence length); with ``symbols``, traced
    with those two sizes symbolic, so one trace serves every point of a sweep (``at``)."""
    phase: str
    batch: int
    seq: int | None
    graphs: list                    # (kind, GraphModule): forward and backward, or inference
    saved_bytes: int = 0            # train: activations the forward saves for the backward
    kv_cache_bytes: int = 0         # decode: the KV cache read at each step
    seconds: float = 0.0            # tracing time
    symbols: dict = dataclasses.field(default_factory=dict)   # "batch"/"seq" → its size symbols
    lowered: dict = dataclasses.field(default_factory=dict)   # (graph index, profile) → lowered graph: a cache

    def at(self, batch: int, seq: int | None) -> dict:
        """The size hints of a point: each symbol → its value there (empty when traced static);
        decode's symbol is the cache's length, the prompt and the new token."""
        values = {"batch": batch, "seq": None if seq is None else seq + (self.phase == "decode")}
        return {symbol: values[name] for name, symbols in self.symbols.items() for symbol in symbols}

    def bytes_at(self, nbytes: int, batch: int, seq: int | None) -> int:
        """A size measured at the traced point (activations saved, the KV cache: proportional
        to batch x sequence) scaled to another point."""
        scale = batch / self.batch * ((seq / self.seq) if seq and self.seq and "seq" in self.symbols else 1)
        return round(nbytes * scale)


def on_meta(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose parameters and buffers are on the meta device, made without
    copying their data (a model on the meta device already is returned as it is)."""
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device == META for t in tensors):
        return model
    memo = {}
    for tensor in tensors:
        meta = tensor.detach().to(META)
        memo[id(tensor)] = torch.nn.Parameter(meta, tensor.requires_grad) if isinstance(
            tensor, torch.nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def takes(model, name: str) -> bool:
    """Whether the model's forward accepts the keyword ``name``."""
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def capture(model: torch.nn.Module, inputs: tuple, phase: str, activation_budget: float | None = None,
            dynamic: bool = False) -> Captured:
    """Trace ``phase`` of ``model`` (on the meta device) on ``inputs`` (meta tensors; the first
    is the batch of token ids or samples).  ``activation_budget``: AOTAutograd's activation
    memory budget for the training step (1: save what the partitioner saves by default; less:
    recompute in the backward).  ``dynamic``: the batch and sequence dims symbolic (the
    returned ``symbols`` name them; empty where the model specialized them, so the caller
    traces each point instead)."""
    if phase not in PHASES:
        raise PlanError(f"unknown phase {phase!r}; phases are {', '.join(PHASES)}")
    graphs: list = []

    def keep(kind):
        def compile_fn(gm, _example_inputs):
            graphs.append((kind, gm))
            return make_boxed_func(gm)   # runs on the meta device: shapes only
        return compile_fn
    backend = aot_autograd(fw_compiler=keep("forward"), bw_compiler=keep("backward"),
                           inference_compiler=keep("inference"), decompositions=decomposition_table(),
                           partition_fn=min_cut_rematerialization_partition)
    batch = int(inputs[0].shape[0]) if inputs[0].dim() else 1
    seq = int(inputs[0].shape[1]) if inputs[0].dim() > 1 and not inputs[0].is_floating_point() else None
    kwargs = {"use_cache": False} if takes(model, "use_cache") else {}
    if dynamic:
        _mark_dynamic(inputs[0], seq is not None)
    start = time.perf_counter()
    torch._dynamo.reset()
    extra = {}
    try:
        with _fused_attention():
            if phase == "train":
                _train(model, inputs, kwargs, backend, activation_budget, dynamic)
                extra["saved_bytes"] = saved_bytes(graphs)
            elif phase == "decode":
                extra["kv_cache_bytes"] = _decode(model, inputs, backend, dynamic)
            else:
                if phase == "prefill" and takes(model, "logits_to_keep"):
                    kwargs["logits_to_keep"] = 1   # a server needs the last position's logits only
                with torch.no_grad():
                    torch.compile(model.eval(), backend=backend, dynamic=None if dynamic else False)(*inputs, **kwargs)
    finally:
        torch._dynamo.reset()
    symbols = _symbols(graphs, batch, None if seq is None else seq + (phase == "decode")) if dynamic else {}
    return Captured(phase, batch, seq, graphs, seconds=time.perf_counter() - start, symbols=symbols, **extra)


def _mark_dynamic(tensor: torch.Tensor, sequence: bool, seq_dim: int = 1) -> None:
    torch._dynamo.mark_dynamic(tensor, 0)
    if sequence:
        torch._dynamo.mark_dynamic(tensor, seq_dim % tensor.dim())


def _symbols(graphs: list, batch: int, seq: int | None) -> dict:
    """{"batch": symbols, "seq": symbols} from the graphs' symbolic sizes, by their traced values
    (the planner traces at sizes no other dim has; each cache tensor's batch may have a symbol
    of its own); {} where either was specialized."""
    found: dict = {}
    for _, gm in graphs:
        for node in gm.graph.find_nodes(op="placeholder"):
            value = node.meta.get("val")
            sizes = [value] if isinstance(value, torch.SymInt) else list(value.shape) if isinstance(
                value, torch.Tensor) else []
            for size in sizes:
                if isinstance(size, torch.SymInt) and size.node.expr.is_Symbol and size.node.has_hint():
                    found.setdefault(int(size.node.hint), set()).add(size.node.expr)
    wanted = {"batch": batch, **({"seq": seq} if seq is not None else {})}
    if not all(value in found for value in wanted.values()) or len(set(wanted.values())) < len(wanted):
        return {}
    return {name: tuple(sorted(found[value], key=str)) for name, value in wanted.items()}


@contextlib.contextmanager
def _fused_attention():
    """``F.scaled_dot_product_attention`` traced as the fused op a CPU trace has
    (``_scaled_dot_product_flash_attention_for_cpu``, what the compiler prices as the device's
    attention library or its own flash attention): on the meta device the dispatcher would
    pick SDPA's math form instead, written-out matmuls and softmax in fp32 that no device's
    plan runs.  As on the CPU, a boolean mask becomes an additive one and grouped-query
    attention reads the fewer KV heads."""
    functional = torch.nn.functional
    original = functional.scaled_dot_product_attention

    def fused(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros_like(attn_mask, dtype=query.dtype).masked_fill(~attn_mask, -math.inf)
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)[0]
    functional.scaled_dot_product_attention = fused
    try:
        yield
    finally:
        functional.scaled_dot_product_attention = original


def _train(model, inputs, kwargs, backend, budget, dynamic: bool) -> None:
    import torch._functorch.config as functorch_config
    model.train()
    with functorch_config.patch(activation_memory_budget=1.0 if budget is None else budget):
        out = torch.compile(model, backend=backend, dynamic=None if dynamic else False)(*inputs, **kwargs)
        loss = _loss(out)
        loss.backward()
    model.zero_grad(set_to_none=True)


def saved_bytes(graphs: list) -> int:
    """What the forward graphs save for their backward: the backward graphs' inputs other than
    the parameters and inputs (``primals``) and the incoming gradients (``tangents``)."""
    total = 0
    for kind, gm in graphs:
        if kind != "backward":
            continue
        for node in gm.graph.find_nodes(op="placeholder"):
            value = node.meta.get("val")
            if isinstance(value, torch.Tensor) and not node.name.startswith(("primals", "tangents")):
                total += value.numel() * value.element_size()
    return total


def _loss(out):
    """The scalar a training step differentiates: the mean of the model's first floating output
    (a Hugging Face model's logits).  Not its own loss: that needs the labels' values (a count
    of the tokens not ignored), which the meta device does not have; a cross entropy costs
    about what a mean over the logits does."""
    first = out[0] if isinstance(out, (tuple, list)) else getattr(out, "logits", out)
    if hasattr(first, "last_hidden_state"):
        first = first.last_hidden_state
    if not isinstance(first, torch.Tensor) or not first.is_floating_point():
        raise PlanError("train: the model returns no floating tensor to differentiate; return a loss or logits")
    return first.float().mean()


def _decode(model, inputs, backend, dynamic: bool) -> int:
    """One token for each sequence of the batch against a KV cache holding the prompt
    ``inputs[0]`` (built by running the prompt, on the meta device); returns the cache's bytes."""
    keyword = next((k for k in ("cache", "past_key_values") if takes(model, k)), None)
    if keyword is None or not takes(model, "use_cache"):
        raise PlanError(f"decode needs a model with a KV cache: {type(model).__name__}.forward takes no "
                        "cache/past_key_values and use_cache (Hugging Face's causal LMs do); plan mode='serve' "
                        "with such a model, or plan its forward alone with phase 'infer'")
    model.eval()
    with torch.no_grad():
        out = model(*inputs, use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
        cache_bytes = sum(t.numel() * t.element_size() for t in _tensors(cache))
        written = _in_place(cache, dynamic)
        token = inputs[0][:, -1:].clone()
        if dynamic:
            _mark_dynamic(token, False)

        def step(token):
            logits = model(token, use_cache=True, **{keyword: cache}).logits
            return (logits, *written)   # the new token's keys and values, stored once
        torch.compile(step, backend=backend, dynamic=None if dynamic else False)(token)
    return cache_bytes


def _in_place(cache, dynamic: bool) -> list:
    """Make the cache's layers behave as a serving engine's (a paged or static cache): the new
    token's keys and values are written into room already there, and attention reads the
    whole cache, rather than Hugging Face's DynamicCache growing by concatenation (a copy of
    the cache per step, which no engine pays).  Returns the list each layer appends the new
    keys and values to (the step returns them: stored, not dead code)."""
    written: list = []
    for layer in cache.layers:
        keys, values = layer.keys, layer.values
        grown = [keys.new_empty((*t.shape[:-2], t.shape[-2] + 1, t.shape[-1])) for t in (keys, values)]
        for tensor in grown if dynamic else ():
            _mark_dynamic(tensor, True, seq_dim=-2)
        def update(key_states, value_states, *args, grown=grown, **kwargs):
            written.extend((key_states, value_states))
            return tuple(grown)
        layer.update = update
    return written


def _tensors(value) -> list:
    """The tensors inside a cache object (Hugging Face's DynamicCache keeps layers of keys and values)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    layers = getattr(value, "layers", None)   # Hugging Face's Cache: layers of keys and values
    if layers is None:
        raise PlanError(f"decode: cannot find the KV cache's tensors in a {type(value).__name__}")
    return [t for layer in layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))
            if isinstance(t, torch.Tensor)]
