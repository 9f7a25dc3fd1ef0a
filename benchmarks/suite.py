"""The model benchmark suite: eager, Inductor and hetero — each also with frozen parameters for
inference (Inductor's ``freezing=True``, what CPU users are told to use for inference; hetero's
``freeze=True``) — on real model code (Hugging Face GPT-2, BERT, LLaMA, ViT, ResNet, MobileNetV2,
ConvNeXt, Qwen3-MoE from small configs, and an MLP; torch_hetero.tools.model_zoo), inference and
one training step (forward, loss, backward), on the host.

    python benchmarks/suite.py [--models gpt2,bert,...] [--rounds 15] [--threads 1,all]
                               [--out benchmarks/results] [--gpu PROFILE]

The held-out models (``model_zoo.HELD_OUT``: EfficientNet, RegNet — never tuned on) check that a
speed claim holds beyond the default set: ``--models efficientnet,regnet``.

With ``--gpu h100`` (a Triton profile) the models, inputs and both compilers run on the visible
GPU instead: hetero plans for that profile and runs its Triton natively (threads do not apply).

Per model, in one process: cold compile (fresh cache directories, Dynamo reset: the first
call pays everything) and warm compile (Dynamo reset, caches kept) of each compiler; the
compiled output (and, training, the gradients) against eager's; then median time per call
over interleaved rounds (noise hits every backend alike) at each thread count.  Last, the
per-call overhead of a tiny compiled graph.  Writes suite.json, suite.md and suite.png
(matplotlib) into --out and prints the markdown."""
from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from timing import interleaved_ms

import torch_hetero
from torch_hetero.backend import collect_compiled_graphs
from torch_hetero.errors import GraphFallbackWarning
from torch_hetero.runtime import cache
from torch_hetero.tools import model_zoo

COMPILERS = ("inductor", "inductor-freezing", "hetero", "hetero-freeze")
INFERENCE_ONLY = ("inductor-freezing", "hetero-freeze")   # both freeze parameters only where no gradient is taken
RUN = {"device": "cpu", "options": {}, "sync": lambda: None}   # --gpu: the GPU, its profile, cuda's sync


def compiled(model, compiler):
    if compiler.startswith("hetero"):
        freeze = {"freeze": True} if compiler == "hetero-freeze" else {}
        return torch.compile(model, backend="hetero", options={**RUN["options"], **freeze})
    return torch.compile(model, options={"freezing": True} if compiler == "inductor-freezing" else None)


def modes(compiler) -> tuple:
    return ("inference",) if compiler in INFERENCE_ONLY else ("inference", "training")


def on_device(zoo):
    """The zoo model with its module and inputs on the run's device."""
    zoo.model.to(RUN["device"])
    zoo.inputs = tuple(t.to(RUN["device"]) for t in zoo.inputs)
    return zoo


def fresh_caches():
    """Empty cache directories for both compilers: the next compile is cold.  The host's
    calibration is carried over: it is measured once per host, not per model."""
    calibration = os.path.join(cache.cache_dir(), "calibration")
    root = tempfile.mkdtemp(prefix="hetero_suite_")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(root, "inductor")
    os.environ["TORCH_HETERO_CACHE_DIR"] = os.path.join(root, "hetero")
    if os.path.isdir(calibration):
        shutil.copytree(calibration, os.path.join(cache.cache_dir(), "calibration"))


def loss_of(zoo, out):
    return zoo.main_output(out).float().pow(2).mean()


def training_step(zoo, model):
    """One step as a user runs it: gradients cleared, forward, loss, backward."""
    def step(*inputs):
        model.zero_grad(set_to_none=True)
        loss = loss_of(zoo, model(*inputs))
        loss.backward()
        return loss
    return step


def first_call_s(fn, inputs, no_grad):
    torch._dynamo.reset()
    gc.collect()   # a collection of the previous compile's garbage is not this compile's time
    start = time.perf_counter()
    with torch.no_grad() if no_grad else torch.enable_grad():
        fn(*inputs)
    return time.perf_counter() - start


def relative_error(actual, expected) -> float:
    return ((actual.float() - expected.float()).abs().max() / expected.float().abs().max().clamp_min(1e-12)).item()


def gradients(model) -> dict:
    """name → gradient, zeros where autograd left none (an unused pooler, say)."""
    return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}


def gradient_error(actual: dict, expected: dict) -> float:
    """Largest difference over all gradients, relative to the largest gradient: tensors whose
    gradients are all near zero do not turn rounding noise into huge relative errors."""
    scale = max(g.abs().max().item() for g in expected.values()) or 1.0
    return max((actual[n] - expected[n]).abs().max().item() for n in expected) / scale


def bench_model(name, rounds, threads, log):
    zoo = on_device(model_zoo.build(name))
    inference_model = zoo.model
    training_model = copy.deepcopy(zoo.model).train()
    inputs = zoo.inputs
    result = {"model": name, "parameters_m": round(zoo.parameters_m, 2), "compile_s": {}, "error": {}, "ms": {}}

    with torch.no_grad():
        expected = zoo.main_output(inference_model(*inputs))
    training_step(zoo, training_model)(*inputs)
    expected_grads = gradients(training_model)

    variants = {"inference": {"eager": inference_model}, "training": {"eager": training_step(zoo, training_model)}}
    for compiler in COMPILERS:
        for mode, model in (("inference", inference_model), ("training", training_model))[:len(modes(compiler))]:
            fresh_caches()
            make = (lambda m=model: compiled(m, compiler)) if mode == "inference" else \
                (lambda m=model: training_step(zoo, compiled(m, compiler)))
            no_grad = mode == "inference"
            with collect_compiled_graphs(cached=True) as cold_graphs:
                cold = first_call_s(make(), inputs, no_grad)
            fn = make()
            with collect_compiled_graphs(cached=True) as warm_graphs:   # AOTAutograd's cache holds our graphs
                warm = first_call_s(fn, inputs, no_grad)
            times = {"cold": round(cold, 3), "warm": round(warm, 3)}
            if compiler.startswith("hetero"):   # our own part: lowering to loading, without Dynamo and AOTAutograd
                times.update({f"{k} backend": round(sum(g.compile_s for _, g, _ in graphs), 3)
                              for k, graphs in (("cold", cold_graphs), ("warm", warm_graphs))})
            result["compile_s"][f"{compiler} {mode}"] = times
            variants[mode][compiler] = fn
            log(f"  {compiler} {mode}: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))
        with torch.no_grad():
            actual = zoo.main_output(variants["inference"][compiler](*inputs))
        result["error"][f"{compiler} inference"] = relative_error(actual, expected)
        if "training" in modes(compiler):
            variants["training"][compiler](*inputs)
            result["error"][f"{compiler} training"] = gradient_error(gradients(training_model), expected_grads)

    for count in threads:
        torch.set_num_threads(count)
        for mode in ("inference", "training"):
            ms = interleaved_ms(variants[mode], inputs, rounds, RUN["sync"], no_grad=mode == "inference")
            result["ms"][f"{mode} {count}t"] = {k: round(v, 4) for k, v in ms.items()}
            log(f"  {mode} {count} thread(s): " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()))
    return result


def tiny_graph_overhead_us(calls: int) -> dict:
    """Per-call time of ``x * 2 + 1`` on 16 floats: what a compiler's wrapper costs per call."""
    def fn(x):
        return x * 2 + 1
    x = torch.randn(16, device=RUN["device"])
    torch._dynamo.reset()
    variants = {"eager": fn, **{c: compiled(fn, c) for c in ("inductor", "hetero")}}
    ms = [interleaved_ms(variants, (x,), calls, RUN["sync"], warmup=20) for _ in range(5)]
    return {k: round(statistics.median(m[k] for m in ms) * 1e3, 2) for k in variants}


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarize(results, threads):
    """Speedups over eager, geomeans, and the issue's targets as measured."""
    summary = {}
    for count in threads:
        for mode in ("inference", "training"):
            key = f"{mode} {count}t"
            for compiler in (c for c in COMPILERS if mode in modes(c)):
                speedups = {r["model"]: r["ms"][key]["eager"] / r["ms"][key][compiler] for r in results}
                summary[f"{compiler} {key}"] = {"geomean": geomean(speedups.values()), "per_model": speedups}
    return summary


NAMES = {"inductor": "Inductor", "inductor-freezing": "Inductor+freezing", "hetero": "hetero",
         "hetero-freeze": "hetero+freeze"}
CNNS = ("resnet", "mobilenet_v2", "convnext", "efficientnet", "regnet")   # issue 20: every CNN faster than eager


def markdown(data, threads) -> str:
    results, summary = data["models"], data["summary"]
    names = [NAMES[c] for c in COMPILERS]
    lines = [f"Host: {data['host']}; median of {data['rounds']} interleaved rounds; "
             f"speedup = eager ms / compiled ms.", ""]
    for count in threads:
        lines += [f"### {count} thread(s)", "",
                  "| model | mode | eager ms | " + " | ".join(f"{n} ms" for n in names) + " | "
                  + " | ".join(f"{n} ×" for n in names) + " |",
                  "|---|---|---|" + "---|" * (2 * len(names))]
        for mode in ("inference", "training"):
            key = f"{mode} {count}t"
            for r in results:
                ms = r["ms"][key]
                cells = [_cell(ms.get(c)) for c in COMPILERS] + \
                    [_cell(ms["eager"] / ms[c] if c in ms else None) for c in COMPILERS]
                lines.append(f"| {r['model']} | {mode} | {ms['eager']:.2f} | " + " | ".join(cells) + " |")
            geomeans = [_cell(summary[f"{c} {key}"]["geomean"], bold=True) if f"{c} {key}" in summary else "-"
                        for c in COMPILERS]
            lines.append(f"| **geomean** | {mode} | |" + " |" * len(names) + " " + " | ".join(geomeans) + " |")
        lines.append("")
    lines += ["### Compile time and correctness", "",
              "Seconds of the first call after a Dynamo reset: cold with empty cache directories, warm "
              "with the caches kept (a frozen graph is not cached, by either compiler: its warm compile "
              "is a full one); *backend* is hetero's own part of it (lowering to loading, without "
              "Dynamo and AOTAutograd; 0 when warm, where AOTAutograd's cache holds our graphs and only "
              "their libraries are loaded). Errors: largest difference from eager relative to the "
              "largest eager value (inference: the output; training: all gradients). The frozen "
              "variants compile after the others in the same process: their cold time keeps what those "
              "left in memory.", "",
              "| model | mode | " + " | ".join(f"{n} cold" for n in names) + " | hetero/Inductor cold "
              "| Inductor warm | hetero warm | hetero warm backend | " + " | ".join(f"{n} rel. err" for n in names) + " |",
              "|---|---|" + "---|" * (2 * len(names) + 4)]
    for r in results:
        for mode in ("inference", "training"):
            ind, het = r["compile_s"][f"inductor {mode}"], r["compile_s"][f"hetero {mode}"]
            colds = [_cell((r["compile_s"].get(f"{c} {mode}") or {}).get("cold")) for c in COMPILERS]
            errors = [_error(r["error"].get(f"{c} {mode}")) for c in COMPILERS]
            lines.append(f"| {r['model']} | {mode} | " + " | ".join(colds) + f" | {het['cold'] / ind['cold']:.2f} | "
                         f"{ind['warm']:.2f} | {het['warm']:.2f} | {het['warm backend']:.2f} | " + " | ".join(errors) + " |")
    overhead = data["tiny_graph_us"]
    lines += ["", "### Targets (issues 7 and 20), as measured", ""] + [f"- {t}" for t in targets(data, threads)]
    lines += ["", "### Per-call time of a tiny graph (`x * 2 + 1`, 16 floats), µs", "",
              "| eager | Inductor | hetero |", "|---|---|---|",
              f"| {overhead['eager']:.1f} | {overhead['inductor']:.1f} | {overhead['hetero']:.1f} |"]
    return "\n".join(lines) + "\n"


def _cell(value, bold=False) -> str:
    """A table cell: ``value`` to 2 decimals, or "-" where the compiler has no such run."""
    if value is None:
        return "-"
    return f"**{value:.2f}**" if bold else f"{value:.2f}"


def _error(value) -> str:
    return "-" if value is None else f"{value:.1e}"


def targets(data, threads) -> list:
    """Each target of the issues with the measured value and whether it is met."""
    results, summary, one = data["models"], data["summary"], min(threads)

    def mark(ok):
        return "met" if ok else "**missed**"

    def behind(ours, theirs) -> str:
        slower = [f"{m} {ours['per_model'][m]:.2f}× vs {v:.2f}×" for m, v in theirs["per_model"].items()
                  if ours["per_model"][m] < v]
        return ", ".join(slower) or "none"
    inference = summary[f"hetero inference {one}t"]
    inductor = summary[f"inductor inference {one}t"]
    frozen = summary[f"inductor-freezing inference {one}t"]
    ours_frozen = summary[f"hetero-freeze inference {one}t"]
    slowest = min(inference["per_model"].items(), key=lambda kv: kv[1])
    cnns = {m: ours_frozen["per_model"][m] for m in CNNS if m in ours_frozen["per_model"]}
    cnns_plain = {m: inference["per_model"][m] for m in CNNS if m in inference["per_model"]}
    training = summary[f"hetero training {one}t"]
    slowest_training = min(training["per_model"].items(), key=lambda kv: kv[1])
    ratios = {f"{r['model']} {m}": r["compile_s"][f"hetero {m}"]["cold"] / r["compile_s"][f"inductor {m}"]["cold"]
              for r in results for m in ("inference", "training")}
    worst_ratio = max(ratios.items(), key=lambda kv: kv[1])
    warm = {f"{r['model']} {m}": r["compile_s"][f"hetero {m}"] for r in results for m in ("inference", "training")}
    worst_warm = max(warm.items(), key=lambda kv: kv[1]["warm"])
    worst_backend = max(warm.items(), key=lambda kv: kv[1]["warm backend"])
    tiny = data["tiny_graph_us"]
    return [
        f"inference, {one} thread, with freezing (issue 20): geomean hetero+freeze {ours_frozen['geomean']:.2f}× vs "
        f"Inductor+freezing {frozen['geomean']:.2f}× — {mark(ours_frozen['geomean'] >= 1.05 * frozen['geomean'])} "
        f"(≥ 5 % above); models behind it: {behind(ours_frozen, frozen)}",
        f"inference, {one} thread, without freezing: geomean hetero {inference['geomean']:.2f}× vs Inductor "
        f"{inductor['geomean']:.2f}× — {mark(inference['geomean'] >= inductor['geomean'])}; models behind it: "
        f"{behind(inference, inductor)}; ≥ 1.25× — {mark(inference['geomean'] >= 1.25)}",
        "CNNs faster than eager (issue 20): " + ", ".join(
            f"{m} {cnns[m]:.2f}× frozen, {cnns_plain[m]:.2f}× not" for m in cnns)
        + f" — {mark(all(v > 1.0 for v in list(cnns.values()) + list(cnns_plain.values())))}",
        f"slowest model: {slowest[0]} at {slowest[1]:.2f}× eager — {mark(slowest[1] >= 0.95)} (no model > 5 % slower)",
        f"training step: slowest {slowest_training[0]} at {slowest_training[1]:.2f}× eager — "
        f"{mark(slowest_training[1] >= 1.0)} (not slower than eager); geomean {training['geomean']:.2f}× vs Inductor "
        f"{summary[f'inductor training {one}t']['geomean']:.2f}× — "
        f"{mark(training['geomean'] >= summary[f'inductor training {one}t']['geomean'])}",
        f"cold compile: worst {worst_ratio[0]} at {worst_ratio[1]:.2f} of Inductor's — {mark(worst_ratio[1] <= 0.25)} (≤ 0.25)",
        f"warm compile: worst {worst_warm[0]} at {worst_warm[1]['warm']:.2f} s — {mark(worst_warm[1]['warm'] < 0.5)} "
        f"(< 0.5 s); hetero's own part at most {worst_backend[1]['warm backend']:.2f} s ({worst_backend[0]})",
        f"tiny-graph call: hetero {tiny['hetero']:.1f} µs vs Inductor {tiny['inductor']:.1f} µs — "
        f"{mark(tiny['hetero'] < tiny['inductor'])}",
    ]


def chart(data, threads, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    results = data["models"]
    panels = [(mode, count) for count in threads for mode in ("inference", "training")]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), sharey=True)
    for axis, (mode, count) in zip(axes, panels):
        key = f"{mode} {count}t"
        names = [r["model"] for r in results]
        for offset, compiler in zip((-0.3, -0.1, 0.1, 0.3), COMPILERS):
            if mode not in modes(compiler):
                continue
            speedups = [r["ms"][key]["eager"] / r["ms"][key][compiler] for r in results]
            axis.bar([i + offset for i in range(len(names))], speedups, width=0.2, label=compiler)
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_xticks(range(len(names)), names)
        axis.set_title(f"{mode}, {count} thread(s)")
    axes[0].set_ylabel("speedup over eager")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main():
    warnings.simplefilter("error", GraphFallbackWarning)  # it measures compiled graphs: one run eagerly is an error
    # each model's forward is compiled by every variant (backend, freezing, grad mode): past Dynamo's
    # default of 8 entries per code object a variant would silently run eagerly
    torch._dynamo.config.recompile_limit = torch._dynamo.config.accumulated_recompile_limit = 1024
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(model_zoo.NAMES))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", default="1,all")
    parser.add_argument("--tiny-calls", type=int, default=200)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--gpu", metavar="PROFILE", help="run on the visible GPU, hetero planning for PROFILE")
    args = parser.parse_args()
    threads = [os.cpu_count() if t == "all" else int(t) for t in args.threads.split(",")]
    if args.gpu:
        if not torch.cuda.is_available():
            sys.exit("--gpu needs a visible GPU")
        RUN.update(device="cuda", options={"device": args.gpu, "executor": "native"}, sync=torch.cuda.synchronize)
        threads = [1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    torch.compile(lambda x: x.sin() + 1, backend="hetero")(torch.randn(4))   # imports; calibrates the host
    torch.compile(lambda x: x.cos() + 1)(torch.randn(4, device=RUN["device"]))
    results = []
    for name in args.models.split(","):
        log(f"{name}:")
        torch.set_num_threads(max(threads))
        results.append(bench_model(name, args.rounds, threads, log))
    torch.set_num_threads(1)
    where = f"{torch.cuda.get_device_name()} ({args.gpu} profile, Triton)" if args.gpu else \
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    data = {"host": f"{where}, torch {torch.__version__}, torch_hetero {torch_hetero.__version__}",
            "rounds": args.rounds, "models": results, "tiny_graph_us": tiny_graph_overhead_us(args.tiny_calls),
            "summary": summarize(results, threads)}
    (out / "suite.json").write_text(json.dumps(data, indent=1))
    text = markdown(data, threads)
    (out / "suite.md").write_text(text)
    chart(data, threads, out / "suite.png")
    print(text)


if __name__ == "__main__":
    main()
