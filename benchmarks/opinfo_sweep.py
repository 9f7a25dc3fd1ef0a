"""The full OpInfo sweep: every sample of every op, in float32 plus float16/bfloat16/int64/bool
where the op supports them, with gradients (float32) for ops with autograd; compiled with the
hetero backend and compared with eager.  Prints one line per op (status per dtype, whether it
ran natively or through ATen fallbacks) and the summary the targets are stated in.

    python benchmarks/opinfo_sweep.py [--ops NAME,...] [--dtypes f32,...] [--max-samples N] [--budget-s S]

``--dtypes f32 --max-samples 1`` is the CI test's case set, with the native/fallback table.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from opinfo_cases import float32_ops, run_sample  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool]
SHORT = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.int64: "i64", torch.bool: "bool"}
TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 2e-2}


def sweep_op(op, max_samples: int, dtypes) -> dict:
    """dtype → (status counts, fallback ops, first problem)."""
    results = {}
    for dtype in dtypes:
        if dtype not in op.supported_dtypes("cpu"):
            continue
        counts, fallbacks, problem = collections.Counter(), set(), ""
        grad = dtype == torch.float32 and op.supports_autograd
        tol = TOLERANCE.get(dtype, 1e-4)
        for index, sample in enumerate(op.sample_inputs("cpu", dtype, requires_grad=False)):
            if index >= max_samples:
                break
            try:
                status, used, message = run_sample(op, sample, grad=grad, rtol=tol, atol=tol)
            except Exception as error:  # noqa: BLE001 — a crash is a result too
                status, used, message = "error", [], f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
            counts[status] += 1
            fallbacks.update(used)
            problem = problem or (message if status in ("wrong", "error") else "")
        results[dtype] = (counts, fallbacks, problem)
    return results


def full_name(op) -> str:
    return op.name + ("." + op.variant_test_name if op.variant_test_name else "")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", default="", help="comma-separated op names (default: all)")
    parser.add_argument("--dtypes", default=",".join(SHORT.values()), help="comma-separated, e.g. f32,bf16")
    parser.add_argument("--max-samples", type=int, default=1000)
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="stop starting new ops after this")
    args = parser.parse_args()
    ops = float32_ops()
    dtypes = [dtype for dtype in DTYPES if SHORT[dtype] in args.dtypes.split(",")]
    if args.ops:
        wanted = set(args.ops.split(","))
        ops = [op for op in ops if op.name in wanted or full_name(op) in wanted]
    start = time.perf_counter()
    totals = collections.Counter()
    native, wrong_ops, done = 0, [], 0
    for op in ops:
        if time.perf_counter() - start > args.budget_s:
            break
        results = sweep_op(op, args.max_samples, dtypes)
        done += 1
        f32 = results.get(torch.float32)
        uses_fallback = bool(f32 and f32[1])
        native += not uses_fallback and f32 is not None and set(f32[0]) == {"ok"}
        cells = []
        for dtype, (counts, _, _) in results.items():
            totals.update({f"{k}": v for k, v in counts.items()})
            cells.append(f"{SHORT[dtype]}:" + "/".join(f"{v}{k[0]}" for k, v in sorted(counts.items())))
        problems = [p for _, _, p in results.values() if p]
        if problems:
            wrong_ops.append(op.name)
        kind = "fallback " + ",".join(sorted(f32[1])) if uses_fallback else "native"
        print(f"{full_name(op):<44} {' '.join(cells):<60} "
              f"{kind}{'  !! ' + problems[0] if problems else ''}", flush=True)
    seconds = time.perf_counter() - start
    print(f"\n{done} ops in {seconds:.0f} s; samples: " + ", ".join(f"{v} {k}" for k, v in sorted(totals.items())))
    print(f"float32 ops whose samples all compiled natively and matched: {native}/{done} = {native / max(done, 1):.1%}")
    print(f"ops with a wrong result or a crash: {len(wrong_ops)} {wrong_ops}")


if __name__ == "__main__":
    main()
