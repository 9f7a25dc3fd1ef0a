"""The deployment planner against published LLM serving measurements: each row builds the
published model's shape with random weights (``tools/llm_shapes.py``, on the meta device),
plans it with ``torch_hetero.plan`` for the device, number format, batch, prompt and output
lengths of the measurement (one GPU, no tensor parallelism), and sets the estimate beside the
published figure with its source.

    python benchmarks/published.py [--out benchmarks/results/published.md] [--only NAME]

Throughput is output tokens per second as TensorRT-LLM reports it (batch x output tokens over
the whole run: the prompt's prefill and every decode step); first-token latency is the
prefill of one prompt.  Sources are NVIDIA's own TensorRT-LLM v0.5.0 pages (H100 and H200 in
FP8, A100 in FP16).  No single-GPU MI300X figure with its batch and lengths, and no absolute
MTIA model figure (Meta publishes MTIA results relative to v1 and to GPUs), was found in
sources a reader can check, so neither device has a row."""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

from torch_hetero.tools.llm_shapes import build
from torch_hetero.tools.planner import plan

TRT_PERF = ("NVIDIA TensorRT-LLM v0.5.0, docs/source/performance.md, 'H100 GPUs (FP8)' table "
            "(TP1, max throughput)")
TRT_H100_A100 = ("NVIDIA TensorRT-LLM blog 'H100 has 4.6x A100 Performance in TensorRT-LLM' (v0.5.0): "
                 "H100 FP8, A100 FP16, SXM 80GB, TP1")
TRT_H200 = ("NVIDIA TensorRT-LLM blog 'H200 achieves nearly 12,000 tokens/sec on Llama2-13B' (v0.5.0): "
            "H200 FP8, TP1")

# (name, model shape, device, format, batch, prompt, output, metric, published value, source)
PUBLISHED = [
    ("llama-7b-h100-128/128", "llama-2-7b", "h100", "fp8", 64, 128, 128, "tokens/s", 9193, TRT_PERF),
    ("llama-7b-h100-2048/128", "llama-2-7b", "h100", "fp8", 64, 2048, 128, "tokens/s", 2058, TRT_PERF),
    ("gptj-h100-ttft", "gpt-j-6b", "h100", "fp8", 1, 128, 1, "TTFT ms", 7.1, TRT_H100_A100),
    ("gptj-a100-128/128", "gpt-j-6b", "a100", "fp16", 64, 128, 128, "tokens/s", 3679, TRT_H100_A100),
    ("gptj-a100-ttft", "gpt-j-6b", "a100", "fp16", 1, 128, 1, "TTFT ms", 12.5, TRT_H100_A100),
    ("llama-13b-h200-128/128", "llama-2-13b", "h200", "fp8", 1024, 128, 128, "tokens/s", 11819, TRT_H200),
    ("llama-70b-h200-2048/128", "llama-2-70b", "h200", "fp8", 32, 2048, 128, "tokens/s", 303, TRT_H200),
]


def estimate(shape: str, device: str, fmt: str, batch: int, prompt: int, output: int, metric: str):
    """(the planner's value of ``metric``, its configuration) for one published row."""
    def factory(batch_size, seq_len):
        return build(shape, batch_size, seq_len)
    factory.__name__ = shape
    result = plan(factory, devices=[device], batch_sizes=[batch], seq_lens=[prompt], dtypes=[fmt],
                  output_len=output, progress=False)
    config = next(c for c in result.configs if c.parallelism == "replicas" and c.count == 1)
    if config.error:
        raise RuntimeError(config.error)
    return (config.ttft_s * 1e3 if metric == "TTFT ms" else config.throughput), config


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "published.md"))
    parser.add_argument("--only", help="one row by name")
    args = parser.parse_args(argv)
    rows = [r for r in PUBLISHED if args.only in (None, r[0])]
    lines = ["# The planner against published LLM serving results", "",
             "| model | device, format | batch, prompt/output | metric | published | estimated | error | "
             "estimate bound by | memory | source |", "|---|---|---|---|---|---|---|---|---|---|"]
    errors = []
    for name, shape, device, fmt, batch, prompt, output, metric, published, source in rows:
        start = time.perf_counter()
        value, config = estimate(shape, device, fmt, batch, prompt, output, metric)
        error = value / published - 1
        errors.append(abs(error))
        print(f"{name}: {value:,.4g} {metric} vs {published:,} published ({error:+.0%}), "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        memory = next(r for r in config.reasons if r.startswith("memory ")).split(" (")[0]
        lines.append(f"| {shape} | {device}, {fmt} | {batch}, {prompt}/{output} | {metric} | {published:,} | "
                     f"{value:,.4g} | {error:+.0%} | {config.reasons[0]} | {memory}"
                     f"{'' if config.fits else ' DOES NOT FIT'} | {source} |")
    lines += ["", f"Mean absolute error {sum(errors) / len(errors):.0%}, largest {max(errors):.0%} "
              f"({len(errors)} rows). Estimates: `python benchmarks/published.py`.", ""]
    report = "\n".join(lines)
    print(report)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(report)


if __name__ == "__main__":
    main()
