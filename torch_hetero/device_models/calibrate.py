"""Measured host figures for the ``cpu`` profile: bandwidth of each memory level, the
effective last-level cache size, and matmul FLOP/s.

The host is the one target whose estimates can be checked against real timings, so its peaks
are measured rather than looked up.  The benchmark takes well under 2 s, runs once per host
and is cached as JSON in the torch_hetero cache directory, keyed by a fingerprint of the CPU
model, core and thread counts and the torch version.  ``python -m torch_hetero calibrate``
re-runs it."""
from __future__ import annotations

import hashlib
import json
import math
import os
import time

import torch
from torch.utils._python_dispatch import _disable_current_modes

from ..runtime.cache import _atomic_write, cache_dir

COPY_BYTES = 256 * 2**20  # far beyond any last-level cache
MATMUL_N = 1024
REPEATS = 5
FIGURES = ["dram_gbps", "llc_gbps", "llc_bytes", "local_sram_gbps", "fp32_tflops"]


def measure(bf16_matrix: bool, l2_bytes: int, llc_bytes: int) -> dict:
    """Run the micro-benchmark, given the detected per-core L2 and last-level cache sizes.
    Bandwidths are of a copy (read + write), best of a few runs:

    * ``local_sram_gbps``: one thread, working set a quarter of its L2;
    * ``llc_gbps``: all threads, working set four times all L2s together (within the LLC);
    * ``llc_bytes``: the largest working set still copied at least halfway (geometrically)
      between LLC and DRAM speed — a VM's or a busy host's share, not the die's size;
    * ``dram_gbps``: all threads, ``COPY_BYTES``;
    * ``fp32_tflops`` and, on hosts with bf16 matrix units, ``bf16_tflops``: a matmul.

    The first compile for the host measures from inside the backend, where AOTAutograd's fake
    tensor mode is active: the benchmark leaves every dispatch mode for real tensors (fake
    copies take no time and once cached 2 TB/s "DRAM" figures)."""
    with _disable_current_modes(), torch.no_grad():
        return _measure(bf16_matrix, l2_bytes, llc_bytes)


def _measure(bf16_matrix: bool, l2_bytes: int, llc_bytes: int) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = _copy_gbps(l2_bytes // 4)
    finally:
        torch.set_num_threads(threads)
    dram = _copy_gbps(COPY_BYTES)
    within = min(4 * l2_bytes * threads, llc_bytes // 2)
    llc = _copy_gbps(within)
    effective, size = within, within
    while size * 2 <= min(llc_bytes, COPY_BYTES) and _copy_gbps(size * 2) >= math.sqrt(llc * dram):
        size *= 2
        effective = size
    figures = {"dram_gbps": dram, "llc_gbps": llc, "llc_bytes": float(effective), "local_sram_gbps": local,
               "fp32_tflops": _matmul_tflops(torch.float32)}
    if bf16_matrix:
        figures["bf16_tflops"] = _matmul_tflops(torch.bfloat16)
    return figures


def load(cpu_model: str, cores: int, bf16_matrix: bool, l2_bytes: int, llc_bytes: int,
         force: bool = False) -> dict:
    """The cached figures for this host, measuring (and caching) them if missing or ``force``."""
    path = cache_path(cpu_model, cores, bf16_matrix)
    if not force:
        figures = _read(path, bf16_matrix)
        if figures is not None:
            return figures
    figures = measure(bf16_matrix, l2_bytes, llc_bytes)
    _write(path, {"host": {"cpu": cpu_model, "cores": cores, "threads": torch.get_num_threads(),
                           "torch": torch.__version__}, "figures": figures})
    return figures


def cache_path(cpu_model: str, cores: int, bf16_matrix: bool) -> str:
    key = json.dumps([cpu_model, cores, torch.get_num_threads(), torch.__version__, bf16_matrix])
    return os.path.join(cache_dir(), "calibration", f"cpu-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json")


def _best_seconds(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up: page faults, thread pool, library dispatch
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _copy_gbps(working_set: int) -> float:
    """Copy bandwidth (bytes read + written per second) with source and destination together
    ``working_set`` bytes."""
    src = torch.ones(max(working_set // 8, 1024))
    dst = torch.empty_like(src)
    repeats = max(REPEATS, min(100, COPY_BYTES // max(working_set, 1)))  # small copies are noisy
    return 2 * src.nbytes / _best_seconds(lambda: dst.copy_(src), repeats) / 1e9


def _matmul_tflops(dtype) -> float:
    a = torch.rand(MATMUL_N, MATMUL_N).to(dtype)
    b = torch.rand(MATMUL_N, MATMUL_N).to(dtype)
    return 2 * MATMUL_N**3 / _best_seconds(lambda: torch.mm(a, b)) / 1e12


def _read(path: str, bf16_matrix: bool):
    """The cached figures, or None when missing, unreadable or incomplete."""
    try:
        with open(path) as f:
            figures = json.load(f)["figures"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    wanted = FIGURES + (["bf16_tflops"] if bf16_matrix else [])
    ok = isinstance(figures, dict) and all(
        isinstance(figures.get(k), (int, float)) and math.isfinite(figures[k]) and figures[k] > 0 for k in wanted)
    return {k: float(figures[k]) for k in wanted} if ok else None


def _write(path: str, record: dict) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _atomic_write(path, json.dumps(record, indent=1).encode())
    except OSError:
        pass  # an unwritable cache only means measuring again in the next process
