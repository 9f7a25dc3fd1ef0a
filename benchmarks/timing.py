"""Timing shared by the benchmarks: variants run in interleaved rounds, so that machine noise
hits each alike; medians in milliseconds."""
from __future__ import annotations

import contextlib
import statistics
import time

import torch


def interleaved_ms(variants: dict, inputs: tuple, rounds: int, sync=lambda: None, warmup: int = 3,
                   no_grad: bool = True) -> dict:
    """name → median milliseconds per call of ``variants[name](*inputs)`` (under no_grad unless
    told otherwise: a training step needs autograd)."""
    times = {name: [] for name in variants}
    with torch.no_grad() if no_grad else contextlib.nullcontext():
        for _ in range(warmup):
            for variant in variants.values():
                variant(*inputs)
        for _ in range(rounds):
            for name, variant in variants.items():
                sync()
                start = time.perf_counter()
                variant(*inputs)
                sync()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(samples) * 1e3 for name, samples in times.items()}
