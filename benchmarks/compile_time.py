"""Cold and warm compile time of the 2-layer GPT-2-style model (torch_hetero.examples.TinyGPT),
inference and one training step, with a correctness check and the kernel/fallback summary.

    python benchmarks/compile_time.py [--repeats 3]

cold: empty TORCH_HETERO_CACHE_DIR and torch._dynamo.reset() — the first call pays Dynamo,
AOTAutograd, lowering, codegen and the C++ build.  warm: Dynamo reset again, cache kept — the
C++ build is a cache hit.  Dynamo itself is warmed up first on an unrelated function so that
one-time imports are not counted against either."""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

import torch_hetero
from torch_hetero.examples import TinyGPT


def first_call_seconds(model, idx, train: bool) -> tuple[float, torch.Tensor]:
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="hetero", options={"strict": True})
    start = time.perf_counter()
    if train:
        out = compiled(idx)
        out.float().pow(2).mean().backward()
    else:
        with torch.no_grad():
            out = compiled(idx)
    return time.perf_counter() - start, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, idx = TinyGPT(), torch.randint(0, 512, (2, 32))
    with torch.no_grad():
        expected = model(idx)
    torch.compile(lambda x: x.sin() + 1, backend="hetero")(torch.randn(4))  # warm up Dynamo imports

    rows = []
    for train in (False, True):
        cold, warm = [], []
        for _ in range(args.repeats):
            os.environ["TORCH_HETERO_CACHE_DIR"] = tempfile.mkdtemp(prefix="hetero_bench_")
            seconds, out = first_call_seconds(model, idx, train)
            cold.append(seconds)
            error = (out.detach() - expected).abs().max().item()
            seconds, _ = first_call_seconds(model, idx, train)
            warm.append(seconds)
            model.zero_grad(set_to_none=True)
        rows.append(("training step" if train else "inference", statistics.median(cold),
                     statistics.median(warm), error))

    with torch.no_grad():
        report = torch_hetero.explain(model, idx)
    print(f"TinyGPT (2 layers, dim 128), input {tuple(idx.shape)}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print(f"{'graph':<15}{'cold compile s':>16}{'warm compile s':>16}{'max abs err':>14}")
    for name, cold, warm, error in rows:
        print(f"{name:<15}{cold:>16.2f}{warm:>16.2f}{error:>14.1e}")
    print(f"inference report: {len(report.kernels)} generated kernels, {len(report.externs)} extern calls "
          f"({sorted({e.name.split(': ')[1] for e in report.externs})}), fallbacks: {report.fallbacks or 'none'}")


if __name__ == "__main__":
    main()
