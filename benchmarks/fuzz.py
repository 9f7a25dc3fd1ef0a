"""Differential fuzzing at scale: seeded random graphs (tests/fuzz_graphs.py) compiled with the
hetero backend — on the host, statically and with dynamic=True, and every tenth under the
Triton interpreter for a rotating accelerator profile — compared with eager within a time
budget.  Prints every failure's recipe (its seed reproduces it) and a summary.

    python benchmarks/fuzz.py [--budget-s 600] [--start 0]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from fuzz_graphs import random_graph  # noqa: E402
from utils import check  # noqa: E402

PROFILES = ["h100", "mtia-v2", "mi300x", "rivos-sim", "a100"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget-s", type=float, default=600)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args()
    start, seed, failures, runs = time.perf_counter(), args.start, [], 0
    while time.perf_counter() - start < args.budget_s:
        fn, inputs, recipe = random_graph(seed)
        variants = [("host", {}, False), ("host dynamic", {}, True)]
        if seed % 10 == 0:
            profile = PROFILES[(seed // 10) % len(PROFILES)]
            variants.append((f"{profile} interpreter", {"device": profile, "executor": "interpret"}, False))
        for name, options, dynamic in variants:
            runs += 1
            try:
                check(fn, *inputs, dynamic=dynamic, atol=1e-4, rtol=1e-4, options=options)
            except Exception as error:  # noqa: BLE001 — every failure is a finding
                failures.append(f"{name}, {recipe}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
                print("FAIL", failures[-1], flush=True)
        seed += 1
    print(f"\n{seed - args.start} graphs, {runs} compiled runs in {time.perf_counter() - start:.0f} s; "
          f"{len(failures)} failures")


if __name__ == "__main__":
    main()
