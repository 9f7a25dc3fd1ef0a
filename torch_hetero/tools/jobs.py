"""A whole job on N devices of one profile, estimated from the compiler's own plans: a training
step under data parallelism (DDP) or full sharding (FSDP2), and LLM serving (prefill, decode,
and prefill and decode on different profiles).  The device model prices each graph
(``compiler.plan_graph``), ``planning/collectives.py`` the communication, and the memory is
counted per device: weights, gradients, Adam's two states, the activations at the plans' peaks,
the KV cache.

How the parts combine (each one a stated assumption, as in the docstrings below):

* DDP all-reduces gradients in 25 MiB buckets (DDP's ``bucket_cap_mb``) while the backward
  runs: only what does not fit under the backward, and the last bucket, is exposed.
* FSDP2 (``fully_shard`` per block, the blocks of the model's largest ``ModuleList``)
  all-gathers each block's parameters before its forward and again before its backward, and
  reduce-scatters its gradients after; prefetching hides them under compute except the first
  gather of each pass and the last reduce-scatter.
* Adam's step reads parameters, gradients and both states and writes three of them: memory
  bound, at the device's DRAM bandwidth, on each device's shard.
* N "devices" of the host profile are N processes on this host (what gloo runs here): they
  share its cores and memory, so each computes N times slower than the host alone, and their
  collectives (copies by the same cores) hide under nothing.
* Serving: a request's prompt is one prefill; each output token one decode step against the
  KV cache, every step estimated at the cache's mean length while generating (the prompt and
  half the output), the new token's keys and values written into room already in the cache
  as a serving engine's paged or static cache does (``capture._in_place``); replicas serve
  independently, tensor parallelism is not modelled; each decode step pays its kernels'
  launches (no CUDA graph replay)."""
from __future__ import annotations

import collections
import dataclasses
import math

import torch

from ..compiler import lower_graph, plan_lowered
from ..planning.collectives import collective

DDP_BUCKET_BYTES = 25 * 2**20      # torch DDP's default bucket_cap_mb
ADAM_STATES = 2                    # exp_avg, exp_avg_sq: torch.optim.Adam keeps them in the parameters' dtype
ADAM_TRAFFIC = 7                   # reads p, g, m, v; writes p, m, v (per parameter element)


@dataclasses.dataclass(frozen=True)
class GraphCost:
    """A phase's graphs on one device: estimated time, what bounds it, the activations' peak."""
    seconds: float
    bound: str                     # "compute", "memory" or "launch": the largest share of the steps' time
    peak_bytes: int                # intermediates live at once at the largest graph's peak
    seconds_by_kind: dict          # graph kind ("forward", "backward", "inference") → seconds
    peak_by_kind: dict             # graph kind → its largest graph's peak
    fallbacks: dict = dataclasses.field(default_factory=dict)   # ATen op → calls with no native kernel there


def graph_cost(captured, options, batch: int | None = None, seq: int | None = None) -> GraphCost:
    """Plan and estimate each of ``captured``'s graphs on the options' profile; a graph traced
    with symbolic sizes is lowered once per profile and planned at (``batch``, ``seq``)."""
    by_kind, peaks, parts, fallbacks = {}, {}, {"compute": 0.0, "memory": 0.0, "launch": 0.0}, collections.Counter()
    hints = captured.at(batch, seq) if batch is not None else {}
    for index, (kind, gm) in enumerate(captured.graphs):
        key = (index, options.profile.name, options.profile.target)
        if key not in captured.lowered:
            captured.lowered[key] = lower_graph(gm, options)
        graph, notes = captured.lowered[key]
        fallbacks.update(graph.fallback_counts)
        graph.size_hints.update((symbol, value) for symbol, value in hints.items() if symbol in graph.size_hints)
        plan = plan_lowered(graph, notes, options)
        estimates = [step.work.estimate for step in plan.steps if step.work.estimate is not None]
        by_kind[kind] = by_kind.get(kind, 0.0) + sum(e.time_us for e in estimates) * 1e-6
        for estimate in estimates:
            parts[estimate.bound] += estimate.time_us
        peaks[kind] = max(peaks.get(kind, 0), plan.peak_bytes or 0)
    return GraphCost(sum(by_kind.values()), max(parts, key=parts.get), max(peaks.values(), default=0), by_kind,
                     peaks, dict(fallbacks))


@dataclasses.dataclass(frozen=True)
class Memory:
    """Bytes one device holds at its peak, by what holds them."""
    weights: int
    gradients: int
    optimizer: int
    activations: int
    kv_cache: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.kv_cache


@dataclasses.dataclass(frozen=True)
class TrainStep:
    parallelism: str               # "single" (one device), "ddp" or "fsdp"
    world: int
    seconds: float                 # one step of every device
    compute_seconds: float         # forward + backward on one device
    optimizer_seconds: float
    exposed_comm_seconds: float    # communication not hidden under compute
    comm_seconds: float            # all of it
    memory: Memory
    bound: str


def train_step(cost: GraphCost, saved_bytes: int, weight_bytes: int, unit_bytes: int, profile, link,
               world: int, parallelism: str) -> TrainStep:
    """One training step on ``world`` devices; ``cost`` the forward and backward of one device's
    batch, ``saved_bytes`` what the forward saves for the backward, ``weight_bytes`` the
    parameters', ``unit_bytes`` the largest block's (FSDP's unit)."""
    forward, backward = cost.seconds_by_kind.get("forward", 0.0), cost.seconds_by_kind.get("backward", 0.0)
    share = weight_bytes if parallelism in ("ddp", "single") else math.ceil(weight_bytes / world)
    optimizer_seconds = ADAM_TRAFFIC * share / (profile.dram_gbps * 1e9)
    if link is not None and link.topology == "host":   # processes on one host share its cores and memory
        forward, backward, optimizer_seconds = forward * world, backward * world, optimizer_seconds * world
    reduce_gbps = profile.dram_gbps
    if world == 1:
        comm = exposed = 0.0
    elif parallelism in ("ddp", "single"):
        buckets = max(1, math.ceil(weight_bytes / DDP_BUCKET_BYTES))
        bucket = collective("all_reduce", min(weight_bytes, DDP_BUCKET_BYTES), world, link, reduce_gbps).seconds
        comm = buckets * bucket
        exposed = max(bucket, comm - backward)          # the last bucket waits for the backward's end
    else:
        units = max(1, math.ceil(weight_bytes / unit_bytes))
        gather = collective("all_gather", unit_bytes, world, link, reduce_gbps).seconds
        scatter = collective("reduce_scatter", unit_bytes, world, link, reduce_gbps).seconds
        comm = units * (2 * gather + scatter)
        exposed = (max(gather, units * gather - forward)                         # forward's gathers
                   + max(scatter, units * (gather + scatter) - backward))        # backward's gathers, scatters
    activations = max(cost.peak_by_kind.get("forward", 0), saved_bytes + _backward_transients(cost, weight_bytes))
    if parallelism in ("ddp", "single"):
        memory = Memory(weight_bytes, weight_bytes, ADAM_STATES * weight_bytes, activations)
    else:   # a shard of everything persistent, two blocks gathered at once (one prefetched)
        memory = Memory(share + 2 * unit_bytes, share + 2 * unit_bytes, ADAM_STATES * share, activations)
    if link is not None and link.topology == "host":   # the same cores copy: nothing hides under compute
        exposed = comm
    compute = forward + backward
    seconds = compute + optimizer_seconds + exposed
    bound = "link" if exposed > 0.5 * compute else cost.bound
    return TrainStep(parallelism, world, seconds, compute, optimizer_seconds, exposed, comm, memory, bound)


def _backward_transients(cost: GraphCost, weight_bytes: int) -> int:
    """The backward's own intermediates at its peak beyond the gradients it outputs (counted
    apart, as they outlive it until the optimizer steps)."""
    return max(0, cost.peak_by_kind.get("backward", 0) - weight_bytes)


@dataclasses.dataclass(frozen=True)
class Serving:
    """LLM serving on one replica: a batch of ``batch`` prompts of ``seq`` tokens, ``output``
    tokens generated for each."""
    batch: int
    seq: int
    output: int
    prefill_seconds: float         # time to first token
    decode_seconds: float          # time per output token
    transfer_seconds: float        # the KV cache moved from the prefill device to the decode device (split)
    memory: Memory                 # on the decode device (the prefill device's is ``prefill_memory``)
    prefill_memory: Memory
    bound: str
    split: bool = False            # prefill and decode on two devices, a pipeline

    @property
    def request_seconds(self) -> float:
        return self.prefill_seconds + self.transfer_seconds + self.output * self.decode_seconds

    @property
    def tokens_per_second(self) -> float:
        """Output tokens per second of one replica (prefill and decode on one device in turn,
        or on two devices as a pipeline: the slower stage sets the pace)."""
        if self.split:
            stage = max(self.prefill_seconds + self.transfer_seconds, self.output * self.decode_seconds)
            return self.batch * self.output / stage
        return self.batch * self.output / self.request_seconds


def serving(prefill: GraphCost, decode: GraphCost, kv_bytes: int, weight_bytes: int, batch: int, seq: int,
            output: int, split_link=None) -> Serving:
    """Serving estimate from the prefill and decode costs on their devices; ``split_link``:
    (Interconnect, the prefill device's DRAM GB/s) where prefill runs on another device, whose
    KV cache then crosses the network (the slower of the two devices' NICs)."""
    transfer = 0.0
    if split_link is not None:
        link, reduce_gbps = split_link
        transfer = collective("send", kv_bytes, 2, link, reduce_gbps).seconds
    if split_link is None:   # one device runs both phases: the larger of their activations
        decode_memory = prefill_memory = Memory(weight_bytes, 0, 0, max(prefill.peak_bytes, decode.peak_bytes),
                                                kv_bytes)
    else:
        decode_memory = Memory(weight_bytes, 0, 0, decode.peak_bytes, kv_bytes)
        prefill_memory = Memory(weight_bytes, 0, 0, prefill.peak_bytes, kv_bytes)
    bound = decode.bound if output * decode.seconds >= prefill.seconds else prefill.bound
    return Serving(batch, seq, output, prefill.seconds, decode.seconds, transfer, decode_memory, prefill_memory,
                   bound, split_link is not None)


def unit_bytes(model: torch.nn.Module) -> int:
    """FSDP2's largest unit, as ``fully_shard`` is applied per block and then to the model: the
    largest block of its largest ``ModuleList`` or ``Sequential`` (a transformer's layers), or
    the parameters outside them (embeddings, head) where those weigh more; the whole model
    where it has no such blocks."""
    containers = [m for m in model.modules() if isinstance(m, (torch.nn.ModuleList, torch.nn.Sequential)) and len(m) > 1]
    if not containers:
        return _bytes(model)
    blocks = max(containers, key=_bytes)
    return max(max(_bytes(block) for block in blocks), _bytes(model) - _bytes(blocks))


def _bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())
