"""What a symbolic trace costs against one per sweep point, for the planner's choice
(``planner.SYMBOLIC_FROM_POINTS``, ``SYMBOLIC_PHASES``): an 8-layer Llama-3-8B shape traced on
the meta device for prefill and decode, static and with batch and sequence symbolic, and its
plan on h100 at two points.

    python benchmarks/symbolic_sweep.py [--layers 8]"""
from __future__ import annotations

import argparse
import time

import torch

from torch_hetero import options
from torch_hetero.tools import jobs
from torch_hetero.tools.capture import capture
from torch_hetero.tools.llm_shapes import build


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args(argv)
    h100 = options.resolve({"device": "h100"})
    with torch.device("meta"):
        model, (ids,) = build("llama-3-8b", 32, 1024, layers=args.layers)
    print(f"llama-3-8b, {args.layers} layers, traced at batch 32 x 1024; seconds")
    print(f"{'phase':8} {'trace':>7} {'trace':>7} {'plan':>7} {'plan':>7}")
    print(f"{'':8} {'static':>7} {'symbolic':>7} {'static':>7} {'symbolic':>7}")
    for phase in ("prefill", "decode"):
        row = {}
        for dynamic in (False, True):
            start = time.perf_counter()
            traced = capture(model, (ids,), phase, dynamic=dynamic)
            row[("trace", dynamic)] = time.perf_counter() - start
            jobs.graph_cost(traced, h100, 32, 1024)          # lowers once (symbolic) and plans
            start = time.perf_counter()
            jobs.graph_cost(traced, h100, 8, 1024)           # a second point: planning only
            row[("plan", dynamic)] = time.perf_counter() - start
        print(f"{phase:8} {row['trace', False]:7.1f} {row['trace', True]:7.1f} {row['plan', False]:7.2f} "
              f"{row['plan', True]:7.2f}", flush=True)


if __name__ == "__main__":
    main()
