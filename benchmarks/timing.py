"""Timing shared by the benchmarks: variants run in interleaved rounds, so that machine noise
hits each alike; medians in milliseconds.  Each timed call follows an untimed call of the same
variant: on a shared VM the first call after another variant's (or after an idle second) pays
for the memory the other one touched — after 0.8 s asleep a 10 ms EfficientNet call took
120 ms — so whichever variant ran after a slow one was charged for it (the one timed after
Inductor's 850 ms EfficientNet call took 110 ms instead of 12)."""
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
                variant(*inputs)
                sync()
                start = time.perf_counter()
                variant(*inputs)
                sync()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(samples) * 1e3 for name, samples in times.items()}
