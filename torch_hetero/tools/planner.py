"""The deployment planner: which device, how many, in which number format, at which batch and
sequence length, for training or for serving, searched and ranked by an objective.

``plan(model, *inputs, devices=[...], mode="serve", ...)`` traces the model on the meta device
(``capture.py``: nothing runs, so a 70B model plans as readily as a small one) once per phase
with the batch and sequence sizes symbolic where the sweep has several points and the model
allows it (else once per point), plans and estimates its graphs on every profile at every point (``compiler.plan_graph``: the
same lowering, fusion, tiling and cost model a compile uses), and combines them into whole-job
estimates (``jobs.py``) at every world size, parallelism and placement: a ranked table of
configurations with the reasons (what bounds them, memory, links) and the Pareto front of
latency against performance per watt (``plan_report.py`` writes plan.md, plan.json and
pareto.png).  ``python -m torch_hetero plan MODULE:FACTORY`` is the same with the options as
flags.  A configuration that fails is reported with its error; the others go on."""
from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
import itertools
import os
import sys
import warnings

import torch

from .. import options as options_mod
from ..device_models import get_profile
from ..device_models.table import format_bytes
from ..errors import FallbackWarning, PlanError, one_line
from . import jobs
from .audit import factory_output
from .capture import META, capture, on_meta
from .formats import FLOAT_FORMATS, FORMATS, QUANTIZED_FORMATS, convert, fp8_encoding

MODES = ("train", "serve")
OBJECTIVES = ("throughput", "latency", "perf_per_watt", "cost")
BUDGETS = (0.5, 0.25, 0.1, 0.0)    # activation memory budgets tried, in order, where a step does not fit
# A symbolic trace costs ~2.2x a static one and each point's plan ~2.7x (an 8-layer Llama-3-8B
# prefill: 14.1 s and 1.0 s against 6.3 s and 0.37 s, benchmarks/symbolic_sweep.py): worth it
# from 3 points.  Not for decode, whose every KV-cache tensor brings its own batch and length
# symbols (7.2 s a point's plan against 0.26 s).
SYMBOLIC_FROM_POINTS = 3
SYMBOLIC_PHASES = ("train", "prefill", "infer")


@dataclasses.dataclass
class Config:
    """One deployment: ``count`` devices running the model one way, and its estimates."""
    devices: str                   # the profile, or "prefill → decode" for a split placement
    count: int
    dtype: str
    batch: int                     # per device (train) or per replica (serve)
    seq: int | None
    parallelism: str               # train: "single", "ddp", "fsdp"; serve: "replicas", "split"
    checkpointing: str = ""        # train: the activation memory budget it needs, and what recompute costs
    throughput: float = 0.0        # samples/s (train), output tokens/s (serve), all devices together
    latency_s: float = 0.0         # a step (train); a request: first token + every output token (serve)
    ttft_s: float | None = None    # serve: time to first token
    tpot_s: float | None = None    # serve: time per output token
    watts: float = 0.0             # the devices' TDP, an upper bound on their power
    memory_bytes: int = 0          # per device at its peak (the busier device of a split)
    capacity_bytes: int = 0
    kv_cache_bytes: int = 0
    price_per_hour: float | None = None
    reasons: list = dataclasses.field(default_factory=list)
    error: str | None = None

    @property
    def fits(self) -> bool:
        return self.error is None and self.memory_bytes <= self.capacity_bytes

    @property
    def perf_per_watt(self) -> float:
        return self.throughput / self.watts if self.watts else 0.0

    @property
    def per_dollar(self) -> float | None:
        """Samples or tokens per unit of the user's currency."""
        return self.throughput * 3600 / self.price_per_hour if self.price_per_hour else None

    def objective(self, name: str) -> float:
        """Higher is better (latency is negated)."""
        return {"throughput": self.throughput, "latency": -self.latency_s, "perf_per_watt": self.perf_per_watt,
                "cost": self.per_dollar or 0.0}[name]


@dataclasses.dataclass
class DeploymentPlan:
    model: str
    mode: str
    objective: str
    configs: list                  # Config, best first: those that fit, then those that do not, then errors
    unit: str                      # "samples/s" or "tokens/s"
    output_len: int | None = None

    @property
    def best(self) -> Config | None:
        return next((c for c in self.configs if c.fits), None)

    def pareto(self) -> list:
        """The configurations no other beats on both latency and performance per watt."""
        fitting = [c for c in self.configs if c.fits]
        return sorted((c for c in fitting if not any(
            o.latency_s <= c.latency_s and o.perf_per_watt >= c.perf_per_watt
            and (o.latency_s < c.latency_s or o.perf_per_watt > c.perf_per_watt) for o in fitting)),
            key=lambda c: c.latency_s)

    def __str__(self) -> str:
        from .plan_report import summary_text
        return summary_text(self)

    def write(self, directory: str) -> dict:
        """plan.md, plan.json and pareto.png in ``directory``: kind → path."""
        from .plan_report import write_files
        return write_files(self, directory)


def plan(model, *inputs, devices, batch_sizes=None, seq_lens=None, mode: str = "serve", world_sizes=(1,),
         dtypes=("bf16",), objective: str = "throughput", prices: dict | None = None, output_len: int = 128,
         progress: bool = True) -> DeploymentPlan:
    """Rank deployments of ``model`` on ``devices`` (profile names or files).  ``model`` is a
    module with example ``inputs`` (the first a batch of token ids or samples: the sweep
    resizes its first dim to each batch size and, for token ids, its second to each sequence
    length), or a factory called with ``batch_size`` and ``seq_len`` keywords (as many as it
    accepts) on the meta device, returning (model, inputs).  ``mode`` "train" estimates a step
    with DDP and with FSDP2 at each of ``world_sizes`` (activation checkpointing where memory
    requires), "serve" prefill and decode at each batch (per replica) and prompt length, with
    ``output_len`` tokens generated, on ``world_sizes`` devices as replicas or as split
    prefill/decode pairs.  ``objective``: what ranks them; "cost" needs ``prices`` (profile →
    the user's price per device-hour)."""
    options = _checked(devices, batch_sizes, seq_lens, mode, world_sizes, dtypes, objective, prices, output_len)
    devices, batch_sizes, seq_lens, world_sizes, dtypes = options
    say = (lambda text: print(f"plan: {text}", file=sys.stderr, flush=True)) if progress else (lambda text: None)
    build = _builder(model, inputs)
    profiles = {d: get_profile(d) for d in devices}
    configs: list = []
    for dtype in dtypes:
        encodings = {name: fp8_encoding(p) if dtype == "fp8" else None for name, p in profiles.items()}
        traces = {e: _Traces(build, dtype, e, batch_sizes, seq_lens, output_len if mode == "serve" else 0)
                  for e in dict.fromkeys(encodings.values())}
        for batch, seq in itertools.product(batch_sizes, seq_lens):
            say(f"{dtype}, batch {batch}" + (f", sequence {seq}" if seq else "") + ": tracing on the meta device")
            try:
                if mode == "train":
                    configs += _train_configs(traces[None], profiles, dtype, batch, seq, world_sizes, say)
                else:
                    configs += _serve_configs(traces, encodings, profiles, dtype, batch, seq, world_sizes,
                                              output_len, say)
            except Exception as error:   # this point fails; the others go on
                say(f"error: {one_line(error)}")
                configs += [Config(d, 1, dtype, batch, seq, "-", error=one_line(error)) for d in devices]
    for config in configs:
        config.price_per_hour = _price(config, prices)
    configs.sort(key=lambda c: (c.error is not None, not c.fits, -c.objective(objective)))
    name = type(model).__name__ if isinstance(model, torch.nn.Module) else getattr(model, "__name__", "model")
    return DeploymentPlan(name, mode, objective, configs, "samples/s" if mode == "train" else "tokens/s",
                          output_len if mode == "serve" else None)


def _checked(devices, batch_sizes, seq_lens, mode, world_sizes, dtypes, objective, prices, output_len) -> tuple:
    """The options as lists, or a PlanError saying what to give instead."""
    if mode not in MODES:
        raise PlanError(f"unknown mode {mode!r}; modes are {', '.join(MODES)}")
    if objective not in OBJECTIVES:
        raise PlanError(f"unknown objective {objective!r}; objectives are {', '.join(OBJECTIVES)}")
    devices = [devices] if isinstance(devices, (str, os.PathLike)) else list(devices or [])
    if not devices:
        raise PlanError("devices is empty: give profile names or .toml files (python -m torch_hetero devices "
                        "lists them)")
    for device in devices:
        get_profile(device)   # a ProfileError names the unknown device and the known ones
    batch_sizes = _sizes("batch_sizes", [1] if batch_sizes is None else batch_sizes)
    if seq_lens is None and mode == "serve":
        raise PlanError("serve needs seq_lens: the prompt lengths to plan (e.g. seq_lens=[512, 2048])")
    seq_lens = [None] if seq_lens is None else _sizes("seq_lens", seq_lens)
    world_sizes = _sizes("world_sizes", world_sizes)
    dtypes = [dtypes] if isinstance(dtypes, str) else list(dtypes)
    allowed = FORMATS if mode == "serve" else tuple(FLOAT_FORMATS)
    unknown = [d for d in dtypes if d not in allowed]
    if not dtypes or unknown:
        raise PlanError(f"dtypes for {mode} must be one or more of {', '.join(allowed)}, got {dtypes!r}"
                        + (" (the quantized formats serve; training keeps float weights)" if mode == "train" else ""))
    if objective == "cost":
        missing = [d for d in devices if not prices or get_profile(d).name not in prices]
        if missing:
            raise PlanError(f"objective 'cost' needs your price per device-hour for every device (no price is a "
                            f"hardware fact); missing: {', '.join(map(str, missing))}. Give prices={{'h100': 2.5, "
                            "...}} or --prices h100=2.5,...")
    for name, price in (prices or {}).items():
        if not isinstance(price, (int, float)) or not price > 0:
            raise PlanError(f"prices[{name!r}] must be a positive number (per device-hour), got {price!r}")
    if not isinstance(output_len, int) or output_len < 1:
        raise PlanError(f"output_len must be a positive number of tokens, got {output_len!r}")
    return devices, batch_sizes, seq_lens, world_sizes, dtypes


def _sizes(name: str, values) -> list:
    values = [values] if isinstance(values, int) else list(values)
    if not values:
        raise PlanError(f"{name} is empty: give one or more positive integers")
    bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or v < 1]
    if bad:
        raise PlanError(f"{name} must be positive integers, got {bad[0]!r}")
    return sorted(set(values))


def _builder(model, inputs: tuple):
    """(batch, seq, dtype) → (model on the meta device in dtype, inputs resized on the meta device)."""
    if not isinstance(model, torch.nn.Module):
        if not callable(model):
            raise PlanError(f"model must be a torch.nn.Module with example inputs, or a factory; got {model!r}")
        accepted = _keywords(model)

        def from_factory(batch, seq, dtype):
            kwargs = {k: v for k, v in (("batch_size", batch), ("seq_len", seq)) if k in accepted and v is not None}
            with torch.device(META):
                built, example = factory_output(model(**kwargs), getattr(model, "__name__", "the factory"))
            fixed = {k for k in ("batch_size", "seq_len") if k not in accepted}
            return _cast(on_meta(built), dtype), _resized(example, batch if "batch_size" in fixed else None,
                                                          seq if "seq_len" in fixed else None, dtype)
        return from_factory
    if not inputs:
        raise PlanError("plan(model, *inputs): give example inputs (the first: token ids or samples)")
    base = on_meta(model)
    return lambda batch, seq, dtype: (_cast(base, dtype), _resized(inputs, batch, seq, dtype))


def _keywords(factory) -> set:
    try:
        return set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return set()


def _cast(model, dtype):
    floating = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return model if floating == {dtype} else model.to(dtype)


def _resized(inputs: tuple, batch, seq, dtype) -> tuple:
    """Meta copies of ``inputs``: dim 0 set to ``batch``, and dim 1 of integer inputs (token
    ids, masks) to ``seq``; floating inputs take ``dtype``."""
    out = []
    for value in inputs:
        if not isinstance(value, torch.Tensor):
            out.append(value)
            continue
        shape = list(value.shape)
        if batch is not None and shape:
            shape[0] = batch
        if seq is not None and len(shape) > 1 and not value.is_floating_point():
            shape[1] = seq
        out.append(torch.empty(shape, dtype=dtype if value.is_floating_point() else value.dtype, device=META))
    return tuple(out)


class _Traces:
    """The phases of one model in one number format, traced once with symbolic batch and
    sequence sizes (``capture(dynamic=True)``) where the sweep has ``SYMBOLIC_FROM_POINTS`` or
    more points, the phase is one of ``SYMBOLIC_PHASES`` and the model allows it, each point
    then planned from the same graphs; else traced at each point."""

    def __init__(self, build, dtype: str, encoding, batch_sizes: list, seq_lens: list, output_len: int):
        self.build, self.dtype, self.encoding, self.output_len = build, dtype, encoding, output_len
        self.several = len(batch_sizes) * len(seq_lens) >= SYMBOLIC_FROM_POINTS
        self.largest = (max(batch_sizes), seq_lens[-1])
        self.symbolic: dict = {}       # (phase, budget) → Captured with symbols, or None: the model specialized
        self.points: dict = {}         # (phase, budget, batch, seq) → Captured

    def model_at(self, batch: int, seq):
        return _formatted(self.build, batch, seq, self.dtype, self.encoding)

    @functools.cached_property
    def weights(self) -> tuple:
        """(the model's parameter and buffer bytes, FSDP's largest unit): the same at every point."""
        model, _ = self.model_at(*self._probe("prefill"))
        return _state_bytes(model), jobs.unit_bytes(model)

    def length(self, phase: str, seq):
        """The sequence length a phase is traced and planned at: decode at the cache's mean
        length while generating (the prompt and half the output)."""
        return None if seq is None else seq + self.output_len // 2 if phase == "decode" else seq

    def get(self, phase: str, batch: int, seq, budget=None):
        key = (phase, budget)
        if self.several and phase in SYMBOLIC_PHASES and key not in self.symbolic:
            probe_batch, probe_seq = self._probe(phase)
            traced = capture(*self.model_at(probe_batch, probe_seq), phase, budget, dynamic=True)
            self.symbolic[key] = traced if traced.symbols else None
        if self.symbolic.get(key) is not None:
            return self.symbolic[key]
        point = (phase, budget, batch, seq)
        if point not in self.points:
            self.points[point] = capture(*self.model_at(batch, self.length(phase, seq)), phase, budget)
        return self.points[point]

    def _probe(self, phase: str) -> tuple:
        """Sizes to trace at: the sweep's largest, at least 2 (Dynamo specializes 0 and 1), the
        batch unequal to the sequence symbol's value (one symbol would stand for both)."""
        batch, seq = max(self.largest[0], 2), self.length(phase, self.largest[1])
        if seq is not None:
            seq = max(seq, 2)
            while batch == seq + (phase == "decode"):
                batch += 1
        return batch, seq


def _cost(captured, profile_name: str, batch: int, seq):
    """The captured phase's GraphCost on a profile at a point (its fallbacks are a reason of the
    configurations, not a warning per trace)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)
        return jobs.graph_cost(captured, options_mod.resolve({"device": profile_name, "strict": False}), batch, seq)


def _links(profile):
    """The profile's interconnect; the host's is measured (``calibration/links.py``)."""
    if profile.interconnect is not None:
        return profile.interconnect
    if profile.target.host_threads:
        from ..calibration.links import host_interconnect
        return host_interconnect()
    raise PlanError(f"{profile.name} states no [interconnect] table: add one to its profile to plan more than "
                    "one device")


def _train_configs(traces, profiles, dtype, batch, seq, worlds, say) -> list:
    weights, unit = traces.weights
    configs = []
    for name, profile in profiles.items():
        say(f"{dtype}, batch {batch}: {profile.name}")
        try:
            costs = {}
            for world, parallelism in itertools.product(worlds, ("ddp", "fsdp")):
                if world == 1 and parallelism == "fsdp":
                    continue   # one device: nothing to shard or reduce
                parallelism = "single" if world == 1 else parallelism
                link = _links(profile) if world > 1 else None
                step, budget = _fitting_step(traces, costs, name, profile, link, weights, unit, batch, seq, world,
                                             parallelism)
                configs.append(_train_config(profile, dtype, batch, seq, world, parallelism, step, budget,
                                             costs[1.0][0]))
        except Exception as error:
            say(f"{profile.name}: error: {one_line(error)}")
            configs.append(Config(profile.name, 1, dtype, batch, seq, "-", error=one_line(error)))
    return configs


def _fitting_step(traces, costs, name, profile, link, weights, unit, batch, seq, world, parallelism):
    """The step at the default activation memory; where it does not fit, at the first budget
    of ``BUDGETS`` that fits (traced again: the partitioner recomputes in the backward what it
    no longer saves), or the smallest one tried.  ``costs``: budget → (GraphCost, saved bytes)."""
    step, budget = None, 1.0
    for candidate in (1.0, *BUDGETS):
        if step is not None and step.memory.total <= profile.dram_bytes:
            break
        if candidate not in costs:
            captured = traces.get("train", batch, seq, None if candidate == 1.0 else candidate)
            costs[candidate] = (_cost(captured, name, batch, seq), captured.bytes_at(captured.saved_bytes, batch, seq))
        cost, saved = costs[candidate]
        step, budget = jobs.train_step(cost, saved, weights, unit, profile, link, world, parallelism), candidate
    return step, budget


def _fallbacks(*costs) -> list:
    """The reason naming the ATen ops the device has no native kernel for (its portability
    debt, estimated as if the device ran them at memory speed), if any."""
    counts = collections.Counter()
    for cost in costs:
        counts.update(cost.fallbacks)
    if not counts:
        return []
    return ["fallbacks (no native kernel, estimated at memory speed): "
            + ", ".join(f"{op} x{n}" for op, n in sorted(counts.items()))]


def _train_config(profile, dtype, batch, seq, world, parallelism, step, budget, baseline) -> Config:
    memory = step.memory
    reasons = [f"{step.bound}-bound", *_fallbacks(baseline),
               f"memory {format_bytes(memory.total)} of {format_bytes(profile.dram_bytes)} (weights {format_bytes(memory.weights)}, "
               f"grads {format_bytes(memory.gradients)}, Adam {format_bytes(memory.optimizer)}, activations {format_bytes(memory.activations)})"]
    if world > 1:
        reasons.append(f"link: {step.comm_seconds * 1e3:.2f} ms of {parallelism.upper()} communication, "
                       f"{step.exposed_comm_seconds * 1e3:.2f} ms exposed")
    checkpointing = ""
    if budget < 1.0:
        extra = step.compute_seconds / (baseline.seconds_by_kind.get("forward", 0)
                                        + baseline.seconds_by_kind.get("backward", 0)) - 1
        checkpointing = f"activation budget {budget:g} (recompute {extra:+.0%})"
        reasons.append(f"checkpointing: {checkpointing}" if memory.total <= profile.dram_bytes else
                       f"does not fit even at activation budget {budget:g}: shard more (fsdp, more devices) "
                       "or a smaller batch")
    return Config(profile.name, world, dtype, batch, seq, parallelism, checkpointing,
                  throughput=world * batch / step.seconds, latency_s=step.seconds, watts=world * profile.tdp_w,
                  memory_bytes=memory.total, capacity_bytes=profile.dram_bytes, reasons=reasons)


def _serve_configs(traces, encodings, profiles, dtype, batch, seq, worlds, output_len, say) -> list:
    """Every serving configuration at one sweep point: each device alone as replicas, and each
    ordered pair of devices as split prefill/decode pairs.  The model is traced per number
    encoding (fp8 takes each device's own, ``formats.fp8_encoding``)."""
    costs, weights, configs, kv_bytes = {}, {}, [], 0
    for encoding, traced in traces.items():
        prefill, decode = traced.get("prefill", batch, seq), traced.get("decode", batch, seq)
        middle = traced.length("decode", seq)
        # the cache when the last token is made
        kv_bytes = decode.bytes_at(decode.kv_cache_bytes, batch, middle) * (seq + output_len) // middle
        state = traced.weights[0]
        for name in (n for n, e in encodings.items() if e == encoding):
            say(f"{dtype}, batch {batch}, sequence {seq}: {profiles[name].name}")
            weights[name] = state
            try:
                costs[name] = (_cost(prefill, name, batch, seq), _cost(decode, name, batch, middle))
            except Exception as error:
                say(f"{profiles[name].name}: error: {one_line(error)}")
                configs.append(Config(profiles[name].name, 1, dtype, batch, seq, "-", error=one_line(error)))
    for name, (p, d) in costs.items():
        serving = jobs.serving(p, d, kv_bytes, weights[name], batch, seq, output_len)
        configs += [_serve_config(profiles[name].name, [profiles[name]], world, dtype, serving, _fallbacks(p, d))
                    for world in worlds]
    for (first, (p, _)), (second, (_, d)) in itertools.permutations(costs.items(), 2):
        link = _pair_link(profiles[first], profiles[second])
        serving = jobs.serving(p, d, kv_bytes, weights[second], batch, seq, output_len,
                               (link, profiles[first].dram_gbps))
        configs += [_serve_config(f"{profiles[first].name} → {profiles[second].name}",
                                  [profiles[first], profiles[second]], world, dtype, serving, _fallbacks(p, d))
                    for world in worlds if world % 2 == 0]
    return configs


def _formatted(build, batch, seq, dtype, encoding) -> tuple:
    """The model and inputs at one point in the number format ``dtype`` (fp8 in ``encoding``)."""
    model, inputs = build(batch, seq, FLOAT_FORMATS.get(dtype, torch.bfloat16))
    return convert(model, inputs, dtype, encoding) if dtype in QUANTIZED_FORMATS else (model, inputs)


def _state_bytes(model) -> int:
    """Parameters and buffers (a quantized model's int8 or fp8 weights are buffers); a tied
    weight is one parameter."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def _serve_config(label: str, pair: list, world: int, dtype: str, serving, fallbacks: list) -> Config:
    """``world`` devices as replicas of one (``pair`` of one profile) or ``world / 2`` split pairs."""
    split = len(pair) == 2
    replicas = world // 2 if split else world
    # the device with the least room left: the prefill device holds its activations, the decode device its own
    busier, capacity = max(((serving.prefill_memory, pair[0].dram_bytes), (serving.memory, pair[-1].dram_bytes)),
                           key=lambda held: held[0].total / held[1])
    memory = busier.total
    reasons = [f"{serving.bound}-bound", *fallbacks,
               f"memory {format_bytes(memory)} of {format_bytes(capacity)} (weights {format_bytes(busier.weights)}, "
               f"KV cache {format_bytes(busier.kv_cache)}, activations {format_bytes(busier.activations)})"]
    if split:
        reasons.append(f"link: the KV cache ({format_bytes(serving.memory.kv_cache)}) moves in "
                       f"{serving.transfer_seconds * 1e3:.2f} ms")
    return Config(label, world, dtype, serving.batch, serving.seq, "split" if split else "replicas",
                  throughput=replicas * serving.tokens_per_second, latency_s=serving.request_seconds,
                  ttft_s=serving.prefill_seconds + serving.transfer_seconds, tpot_s=serving.decode_seconds,
                  watts=replicas * sum(p.tdp_w for p in pair), memory_bytes=memory, capacity_bytes=capacity,
                  kv_cache_bytes=serving.memory.kv_cache, reasons=reasons)


def _pair_link(first, second):
    """The link between two different devices: the slower of their network connections (a
    device with no NIC stated reaches the other through its host's PCIe link)."""
    ends = [_links(p) for p in (first, second)]
    outward = [(link.nic_gbps, link.nic_latency_us) if link.scale_out else (link.link_gbps * link.links,
                                                                           link.latency_us) for link in ends]
    gbps, latency = min(g for g, _ in outward), max(t for _, t in outward)
    return dataclasses.replace(ends[0], topology="switch", link_gbps=gbps, links=1, domain=2, latency_us=latency)


def _price(config: Config, prices: dict | None) -> float | None:
    if not prices:
        return None
    names = [name.strip() for name in config.devices.split("→")]
    if any(name not in prices for name in names):
        return None
    per_replica = sum(prices[name] for name in names)
    return per_replica * (config.count // len(names))
