"""The deployment planner (tools/planner.py, capture.py, jobs.py): models traced on the meta
device plan as a real compile does, memory decides checkpointing and sharding, a split
placement wins only where two devices complement each other, and bad options are refused
with what to give instead.  The collective model: test_collectives.py; the estimates against
published runs: benchmarks/published.py."""
import json
import os

import pytest
import torch

import torch_hetero
from torch_hetero.__main__ import main
from torch_hetero.errors import PlanError, ProfileError
from torch_hetero.tools import jobs, model_zoo, planner
from torch_hetero.tools.capture import capture, on_meta
from torch_hetero.tools.examples import TinyGPT
from torch_hetero.tools.planner import plan

PROFILES = os.path.join(os.path.dirname(torch_hetero.__file__), "device_models", "profiles")


def llama():
    zoo = model_zoo.build("llama")
    return zoo.model.to(torch.bfloat16), zoo.inputs


def profile_file(tmp_path, name, **edits):
    """h100.toml with ``edits`` (old text → new text), saved as ``name``.toml."""
    text = open(os.path.join(PROFILES, "h100.toml")).read().replace('name = "h100"', f'name = "{name}"')
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return str(path)


# --- tracing on the meta device -------------------------------------------------------------

def test_phases_trace_without_running_and_the_kv_cache_is_counted():
    model, (ids,) = llama()
    meta = on_meta(model)
    assert next(model.parameters()).device.type == "cpu"        # the caller's model is untouched
    ids = torch.empty(3, 40, dtype=torch.int64, device="meta")
    prefill, decode, train = (capture(meta, (ids,), phase) for phase in ("prefill", "decode", "train"))
    assert [k for k, _ in prefill.graphs] == ["inference"] and [k for k, _ in decode.graphs] == ["inference"]
    assert [k for k, _ in train.graphs] == ["forward", "backward"] and train.saved_bytes > 0
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    assert decode.kv_cache_bytes == 2 * config.num_hidden_layers * 3 * config.num_key_value_heads * 40 * head_dim * 2
    tokens = {n.meta["val"].shape for n in decode.graphs[0][1].graph.find_nodes(op="placeholder")
              if n.meta["val"].dtype == torch.int64}
    assert torch.Size([3, 1]) in tokens                          # one token per sequence
    ops = {str(n.target) for _, gm in prefill.graphs for n in gm.graph.nodes}
    assert "aten._scaled_dot_product_flash_attention_for_cpu.default" in ops   # as a CPU trace, not SDPA's math
    assert "aten.bmm.default" not in ops


def test_a_meta_trace_plans_like_the_real_compile():
    """The planner's estimate of a forward equals explain()'s of the same model compiled for real."""
    model, inputs = llama()
    with torch.no_grad():
        report = torch_hetero.explain(model.eval(), *inputs, device="h100", use_cache=False, logits_to_keep=1)
    captured = capture(on_meta(model), tuple(t.to("meta") for t in inputs), "prefill")
    from torch_hetero import options
    cost = jobs.graph_cost(captured, options.resolve({"device": "h100"}))
    assert cost.seconds * 1e6 == pytest.approx(report.estimate_us, rel=1e-6)


def test_decode_needs_a_model_with_a_kv_cache():
    model = TinyGPT(vocab=64, dim=32, heads=2, layers=1, max_seq=16)
    with pytest.raises(PlanError, match="decode needs a model with a KV cache: TinyGPT.forward takes no cache"):
        capture(on_meta(model), (torch.empty(2, 8, dtype=torch.int64, device="meta"),), "decode")


# --- serving ---------------------------------------------------------------------------------

def test_serving_is_ranked_with_its_reasons_and_every_configuration_has_its_numbers():
    model, inputs = llama()
    result = plan(model, *inputs, devices=["h100", "mi300x"], batch_sizes=[1, 4], seq_lens=[64], world_sizes=[1, 2],
                  output_len=16, progress=False)
    replicas = [c for c in result.configs if c.parallelism == "replicas"]
    splits = [c for c in result.configs if c.parallelism == "split"]
    assert len(replicas) == 2 * 2 * 2 and len(splits) == 2 * 2      # devices x batches x worlds; ordered pairs x batches
    values = [c.throughput for c in result.configs]
    assert values == sorted(values, reverse=True)
    for c in result.configs:
        assert c.fits and c.ttft_s > 0 and c.tpot_s > 0 and c.kv_cache_bytes > 0
        assert c.latency_s == pytest.approx(c.ttft_s + 16 * c.tpot_s)
        assert any(r.endswith("-bound") for r in c.reasons) and any(r.startswith("memory") for r in c.reasons)
    one, two = (next(c for c in replicas if c.devices == "h100" and c.batch == 4 and c.count == n) for n in (1, 2))
    assert two.throughput == pytest.approx(2 * one.throughput) and two.watts == 2 * one.watts
    assert result.pareto() and all(c in result.configs for c in result.pareto())


def test_a_sweep_traces_prefill_once_and_plans_every_point_from_it(monkeypatch):
    """Batch and sequence symbolic: one prefill trace for a 2 x 2 sweep (decode at each point:
    planner.SYMBOLIC_PHASES), and each point's estimates as a trace at that point gives them
    (within the symbolic graph's size arithmetic)."""
    traced = []
    real = planner.capture
    monkeypatch.setattr(planner, "capture", lambda *args, **kwargs: traced.append(kwargs) or real(*args, **kwargs))
    model, inputs = llama()
    sweep = plan(model, *inputs, devices=["h100"], batch_sizes=[2, 8], seq_lens=[32, 64], output_len=8,
                 progress=False)
    assert [t.get("dynamic", False) for t in traced] == [True] + [False] * 4   # prefill once, decode per point
    for batch, seq in ((2, 32), (8, 64)):
        alone = plan(model, *inputs, devices=["h100"], batch_sizes=[batch], seq_lens=[seq], output_len=8,
                     progress=False).configs[0]
        swept = next(c for c in sweep.configs if (c.batch, c.seq) == (batch, seq))
        # the symbolic graph and the static one differ by their size arithmetic and what the static
        # one folds: up to three kernel launches (5 us each on h100) in this launch-bound model
        assert swept.ttft_s == pytest.approx(alone.ttft_s, rel=0.02, abs=1.5e-5)
        assert swept.tpot_s == pytest.approx(alone.tpot_s, rel=0.02, abs=1.5e-5)
        assert swept.kv_cache_bytes == alone.kv_cache_bytes
        # reusing a dead buffer needs sizes provably equal: the symbolic plan reuses less, a bound above
        assert alone.memory_bytes <= swept.memory_bytes <= 1.1 * alone.memory_bytes


def test_a_split_placement_wins_only_where_the_devices_complement_each_other(monkeypatch):
    """Two devices, each twice as fast as the other at one phase (prefill: compute; decode:
    memory), serve best as a pipeline, prefill on the first; where one device is faster at
    both, its replicas win.  The phases' costs are given (the planner's ranking is under test,
    the device model's costs elsewhere)."""
    def cost(seconds):
        return jobs.GraphCost(seconds, "compute", 1 << 20, {"inference": seconds}, {"inference": 1 << 20})
    costs = {}
    monkeypatch.setattr(planner, "_cost", lambda captured, name, batch, seq: costs[name][captured.phase])
    model, inputs = llama()
    options = dict(batch_sizes=[4], seq_lens=[32], world_sizes=[2], output_len=10, progress=False)
    costs.update(h100={"prefill": cost(1e-3), "decode": cost(2e-4)}, a100={"prefill": cost(2e-3), "decode": cost(1e-4)})
    best = plan(model, *inputs, devices=["h100", "a100"], **options).best
    assert (best.parallelism, best.devices, best.count) == ("split", "h100 → a100", 2)
    # the pair's pace is its slower stage: max(1 ms + the KV transfer, 10 x 0.1 ms)
    assert best.throughput == pytest.approx(4 * 10 / max(1e-3 + 0, 1e-3), rel=0.05)
    costs["a100"] = {"prefill": cost(2e-3), "decode": cost(4e-4)}   # h100 now better at both
    result = plan(model, *inputs, devices=["h100", "a100"], **options)
    assert (result.best.parallelism, result.best.devices) == ("replicas", "h100")
    assert any(c.parallelism == "split" for c in result.configs)   # considered, and ranked below


def test_a_model_too_large_for_a_device_does_not_fit_there(tmp_path):
    small = profile_file(tmp_path, "small", **{"dram_gib = 80 ": "dram_gib = 0.001 "})
    model, inputs = llama()
    result = plan(model, *inputs, devices=[small, "h100"], seq_lens=[64], output_len=8, progress=False)
    assert result.best.devices == "h100"
    lost = [c for c in result.configs if c.devices == "small"]
    assert lost and not any(c.fits for c in lost) and result.configs[-1] in lost   # ranked after those that fit


# --- training --------------------------------------------------------------------------------

def tiny():
    return TinyGPT(vocab=256, dim=64, heads=2, layers=4, max_seq=256), (torch.randint(0, 256, (8, 256)),)


def test_training_memory_chooses_checkpointing_then_sharding(tmp_path):
    model, inputs = tiny()
    roomy = plan(model, *inputs, devices=["h100"], mode="train", batch_sizes=[8], world_sizes=[4], dtypes=["fp32"],
                 progress=False)
    ddp = next(c for c in roomy.configs if c.parallelism == "ddp")
    assert ddp.fits and not ddp.checkpointing
    weights = sum(p.numel() * 4 for p in model.parameters())
    activations = ddp.memory_bytes - 4 * weights
    # room for the weights, gradients and Adam, and 60% of the activations: checkpointing fits
    tight = profile_file(tmp_path, "tight", **{"dram_gib = 80 ": f"dram_gib = {(4 * weights + 0.6 * activations) / 2**30} "})
    result = plan(model, *inputs, devices=[tight], mode="train", batch_sizes=[8], world_sizes=[4], dtypes=["fp32"],
                  progress=False)
    ddp = next(c for c in result.configs if c.parallelism == "ddp")
    assert ddp.fits and ddp.checkpointing.startswith("activation budget")
    assert any("recompute" in r for r in ddp.reasons)
    assert ddp.latency_s > next(c for c in roomy.configs if c.parallelism == "ddp").latency_s   # recompute costs
    # a model whose weights outweigh its activations, and no room for a full copy of its weights,
    # gradients and Adam: only sharding fits
    model, inputs = TinyGPT(vocab=4096, dim=256, heads=4, layers=4, max_seq=32), (torch.randint(0, 4096, (1, 16)),)
    weights = sum(p.numel() * 4 for p in model.parameters())
    sharded = plan(model, *inputs, devices=["h100"], mode="train", batch_sizes=[1], world_sizes=[4], dtypes=["fp32"],
                   progress=False)
    need = next(c for c in sharded.configs if c.parallelism == "fsdp").memory_bytes
    assert need < 4 * weights        # a shard of the weights, gradients and Adam, and two gathered blocks
    shard = profile_file(tmp_path, "shard", **{"dram_gib = 80 ": f"dram_gib = {1.02 * need / 2**30} "})
    result = plan(model, *inputs, devices=[shard], mode="train", batch_sizes=[1], world_sizes=[4], dtypes=["fp32"],
                  progress=False)
    by = {c.parallelism: c for c in result.configs}
    assert not by["ddp"].fits and by["fsdp"].fits and result.best.parallelism == "fsdp"
    assert any("shard more" in r for r in by["ddp"].reasons)


class CumulativeMax(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(16, 16)

    def forward(self, x):
        return torch.cummax(self.proj(x), dim=-1).values


def test_an_op_without_a_native_kernel_is_named_in_the_reasons():
    result = plan(CumulativeMax(), torch.randn(4, 16), devices=["h100"], mode="train", world_sizes=[1],
                  dtypes=["fp32"], progress=False)
    reasons = result.configs[0].reasons
    assert any(r.startswith("fallbacks (no native kernel") and "aten.cummax" in r for r in reasons), reasons


def test_data_parallel_communication_hides_under_the_backward_except_the_last_bucket():
    cost = jobs.GraphCost(3e-3, "compute", 0, {"forward": 1e-3, "backward": 2e-3}, {"forward": 0, "backward": 0})
    link = torch_hetero.get_profile("h100").interconnect
    profile = torch_hetero.get_profile("h100")
    weights = 4 * jobs.DDP_BUCKET_BYTES
    step = jobs.train_step(cost, 0, weights, weights // 8, profile, link, 8, "ddp")
    bucket = jobs.collective("all_reduce", jobs.DDP_BUCKET_BYTES, 8, link, profile.dram_gbps).seconds
    assert step.comm_seconds == pytest.approx(4 * bucket)
    assert step.exposed_comm_seconds == pytest.approx(max(bucket, 4 * bucket - 2e-3))
    fsdp = jobs.train_step(cost, 0, weights, weights // 8, profile, link, 8, "fsdp")
    assert fsdp.memory.weights < step.memory.weights and fsdp.memory.optimizer == step.memory.optimizer / 8


def test_processes_on_one_host_share_its_cores():
    cost = jobs.GraphCost(3e-3, "compute", 0, {"forward": 1e-3, "backward": 2e-3}, {"forward": 0, "backward": 0})
    from torch_hetero.device_models.interconnect import Interconnect
    host = Interconnect("host", 2.0, 2, 64, 50.0, 10.0)
    profile = torch_hetero.get_profile("cpu")
    two = jobs.train_step(cost, 0, 1 << 20, 1 << 18, profile, host, 2, "ddp")
    assert two.compute_seconds == pytest.approx(2 * 3e-3)


# --- options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("options,error,message", [
    (dict(devices=["h100", "tpu-v9"]), ProfileError, "unknown device profile 'tpu-v9'; known profiles: cpu"),
    (dict(devices=[]), PlanError, "devices is empty"),
    (dict(devices=["h100"], batch_sizes=[]), PlanError, "batch_sizes is empty"),
    (dict(devices=["h100"], seq_lens=[]), PlanError, "seq_lens is empty"),
    (dict(devices=["h100"], seq_lens=None), PlanError, "serve needs seq_lens"),
    (dict(devices=["h100"], world_sizes=[0]), PlanError, "world_sizes must be positive integers, got 0"),
    (dict(devices=["h100"], objective="cost"), PlanError,
     "objective 'cost' needs your price per device-hour for every device .* missing: h100"),
    (dict(devices=["h100", "a100"], objective="cost", prices={"h100": 2.0}), PlanError, "missing: a100"),
    (dict(devices=["h100"], prices={"h100": -1}), PlanError, r"prices\['h100'\] must be a positive number"),
    (dict(devices=["h100"], mode="finetune"), PlanError, "unknown mode 'finetune'; modes are train, serve"),
    (dict(devices=["h100"], objective="speed"), PlanError, "unknown objective 'speed'"),
    (dict(devices=["h100"], mode="train", dtypes=["fp8"]), PlanError, "training keeps float weights"),
], ids=["unknown-device", "no-devices", "no-batch", "empty-seq", "serve-without-seq", "world-0", "cost-no-prices",
        "cost-partial-prices", "negative-price", "bad-mode", "bad-objective", "quantized-training"])
def test_bad_options_are_refused_with_what_to_give(options, error, message):
    model, inputs = llama()
    options = {"seq_lens": [16], **options}
    with pytest.raises(error, match=message):
        plan(model, *inputs, progress=False, **options)


def test_cost_ranks_by_throughput_per_price():
    model, inputs = llama()
    result = plan(model, *inputs, devices=["h100", "mi300x"], seq_lens=[32], output_len=4, objective="cost",
                  prices={"h100": 3.0, "mi300x": 1.0}, progress=False)
    ranked = [c.per_dollar for c in result.configs]
    assert ranked == sorted(ranked, reverse=True)
    split = next(c for c in result.configs if c.parallelism == "split") if any(
        c.parallelism == "split" for c in result.configs) else None
    assert split is None   # world size 1: no pairs
    one = next(c for c in result.configs if c.devices == "h100")
    assert one.per_dollar == pytest.approx(one.throughput * 3600 / 3.0)


FACTORY = '''
import torch
from torch_hetero.tools import model_zoo

def llama(batch_size=1, seq_len=16):
    zoo = model_zoo.build("llama")
    return zoo.model.to(torch.bfloat16), (torch.randint(0, 2048, (batch_size, seq_len)),)
'''


def test_the_command_line_plans_a_factory_and_writes_the_report(tmp_path, capsys):
    (tmp_path / "models.py").write_text(FACTORY)
    out = tmp_path / "out"
    code = main(["plan", f"{tmp_path / 'models.py'}:llama", "--devices", "h100,mtia-v2", "--batch-sizes", "1,2",
                 "--seq-lens", "32", "--world-sizes", "2", "--output-len", "8", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr()
    assert "llama, serve, 8 output tokens, ranked by throughput" in printed.out   # the factory names it
    assert "plan: bf16, batch 2, sequence 32: mtia-v2" in printed.err
    assert {p.name for p in out.iterdir()} == {"plan.md", "plan.json", "pareto.png"}
    record = json.loads((out / "plan.json").read_text())
    assert record["mode"] == "serve" and len(record["configs"]) == 2 * 2 + 2 * 2 and record["pareto"]
    assert {c["batch"] for c in record["configs"]} == {1, 2}
    assert "## Pareto front" in (out / "plan.md").read_text()
    assert main(["plan", f"{tmp_path / 'models.py'}:llama", "--devices", "h100", "--seq-lens", "32",
                 "--objective", "cost", "--out", str(out)]) == 2
    assert "needs your price per device-hour" in capsys.readouterr().err
    assert main(["plan", f"{tmp_path / 'models.py'}:llama", "--devices", "h100,", "--seq-lens", "32"]) == 2
    assert main(["plan", f"{tmp_path / 'models.py'}:llama", "--devices", "h100", "--seq-lens", "a"]) == 2
    assert main(["plan", f"{tmp_path / 'models.py'}:llama", "--devices", "h100", "--seq-lens", "8",
                 "--prices", "h100"]) == 2
