"""Measured host figures for the ``cpu`` profile: bandwidth of each memory level, the
effective last-level cache size, matmul FLOP/s, and the time per element of the ops the host
cost model prices (``host_ops``).

The host is the one target whose estimates can be checked against real timings, so its
figures are measured rather than looked up — by C++ loops shaped like generated kernels
(``host_microbench``; matmul through torch, as the host runs it).  A calibration takes 1.7 s
on a 2-core host (up to 4 s under load; plus a second or more of g++ the first time), runs
once per host and is cached as JSON in the torch_hetero cache directory, keyed by a
fingerprint of the CPU model, core and thread counts, the torch version and the record's layout; ``python -m
torch_hetero calibrate`` re-runs it.

A busy machine measures too little, never too much, so the figures are the best of ``RUNS``
runs; levels out of physical order (private cache ≥ last-level cache ≥ DRAM) are measured
again and, if still out of order, clamped with a warning.  One process calibrates at a time
(a lock next to the JSON): two measuring at once would each see half the machine.  The JSON
records when and how it was measured."""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import os
import time
import warnings

import torch
from torch.utils._python_dispatch import _disable_current_modes

from ..device_models.host_ops import INFINITE_PRICED, SCALAR_PRICED, VECTOR_PRICED
from ..runtime.cache import atomic_write, cache_dir, file_lock
from . import host_microbench

COPY_BYTES = 256 * 2**20  # far beyond any last-level cache
MIN_STREAM_BYTES = 64 * 2**20  # per timing: small working sets are streamed repeatedly
MATMUL_N = 1024
REPEATS = 5               # timings per figure in one run, best kept
RUNS = 3                  # whole runs, best of each figure kept
REMEASURES = 3            # extra runs of a level found out of order
OP_REPS = 16              # passes over the op benchmarks' L1-resident arrays per timing
BANDWIDTHS = ("local_sram_gbps", "llc_gbps", "dram_gbps")  # fastest level first
FIGURES = ["dram_gbps", "llc_gbps", "llc_bytes", "local_sram_gbps", "fp32_tflops", "call_us", "parallel_call_us",
           "aten_call_us", "channels_last_speedup", "convolution_efficiency"]
TIMES = ("call_us", "parallel_call_us", "aten_call_us")  # the figures where lower is better
ATEN_CALLS = 200          # per timing of an ATen call
# the record's layout, in the cache key: a process of another version finds its own record (one
# with figures it does not know would not load as a profile; one missing figures, measured again,
# would be overwritten back and forth)
RECORD_FORMAT = 3
METHOD = ("C++ streaming loops (dst = src * 0.5; the sum of each thread's best), per-op loops "
          f"(host_microbench), torch matmul; best of {REPEATS} timings per run, best of {RUNS} runs")


def measure(bf16_matrix: bool, l2_bytes: int, llc_bytes: int) -> dict:
    """One run of the micro-benchmark, given the detected per-core L2 and last-level cache
    sizes.  Bandwidths are of a streaming loop (bytes read + written), each thread's best of a
    few timings, summed (a thread another process preempted times itself again):

    * ``local_sram_gbps``: one thread, working set a quarter of its L2;
    * ``llc_gbps``: all threads, working set four times all L2s together (within the LLC);
    * ``llc_bytes``: the largest working set still streamed at least halfway (geometrically)
      between LLC and DRAM speed — a VM's or a busy host's share, not the die's size;
    * ``dram_gbps``: all threads, ``COPY_BYTES``;
    * ``fp32_tflops`` and, on hosts with bf16 matrix units, ``bf16_tflops``: a matmul;
    * ``call_us``, ``parallel_call_us``: a kernel's call from Python without and with an
      OpenMP parallel region (``host_microbench.call_us``); ``aten_call_us``: an extern call's,
      a 1x1 ``addmm`` through ``torch.ops.aten`` as the wrapper calls it (dispatch, output);
    * ``channels_last_speedup``: an inverted-residual block's convolutions through ATen (1x1
      64 → 128, 3x3 depthwise, 1x1 128 → 64; batch 2, 32x32) in NCHW over their time with
      input and weights in channels-last, the library's own layout; ``convolution_efficiency``:
      the block's roofline time (its FLOPs at ``fp32_tflops``, its tensors at ``dram_gbps``) over
      its measured NCHW time (both priced by ``planning.host_library``);
    * ``op_ns``: op → {"vector": ns, "scalar": ns(, "vector_inf": ns)} per element, one core
      (``host_ops``, ``host_microbench.op_seconds``).

    The first compile for the host measures from inside the backend, where AOTAutograd's fake
    tensor mode is active: the benchmark leaves every dispatch mode for real tensors (fake
    copies take no time and once cached 2 TB/s "DRAM" figures)."""
    with _disable_current_modes(), torch.no_grad():
        figures = {level: bandwidth(level, l2_bytes, llc_bytes) for level in BANDWIDTHS}
        figures["llc_bytes"] = float(_effective_llc(figures, l2_bytes, llc_bytes))
        figures["fp32_tflops"] = _matmul_tflops(torch.float32)
        figures["aten_call_us"] = _aten_call_us()
        figures["channels_last_speedup"], figures["convolution_efficiency"] = _convolution_figures(figures)
        if bf16_matrix:
            figures["bf16_tflops"] = _matmul_tflops(torch.bfloat16)
        calls = host_microbench.call_us(REPEATS)
        figures["call_us"], figures["parallel_call_us"] = calls["serial"], calls["parallel"]
        seconds = host_microbench.op_seconds(REPEATS, OP_REPS)
        figures["op_ns"] = {op: {kind: s * 1e9 for kind, s in kinds.items()} for op, kinds in seconds.items()}
        return figures


def bandwidth(level: str, l2_bytes: int, llc_bytes: int) -> float:
    """GB/s of one memory level (one of ``BANDWIDTHS``), as described in ``measure``."""
    threads, size = working_set(level, l2_bytes, llc_bytes)
    return host_microbench.stream_gbps(size, threads, REPEATS, MIN_STREAM_BYTES)


def working_set(level: str, l2_bytes: int, llc_bytes: int) -> tuple:
    """(threads, bytes) that measure ``level``."""
    threads = torch.get_num_threads()
    if level == "local_sram_gbps":
        return 1, l2_bytes // 4
    if level == "llc_gbps":
        return threads, min(4 * l2_bytes * threads, llc_bytes // 2)
    return threads, COPY_BYTES


def _effective_llc(figures: dict, l2_bytes: int, llc_bytes: int) -> int:
    threads, size = working_set("llc_gbps", l2_bytes, llc_bytes)
    threshold = math.sqrt(figures["llc_gbps"] * figures["dram_gbps"])
    effective = size
    while size * 2 <= min(llc_bytes, COPY_BYTES) and \
            host_microbench.stream_gbps(size * 2, threads, REPEATS, MIN_STREAM_BYTES) >= threshold:
        size *= 2
        effective = size
    return effective


def calibrate(bf16_matrix: bool, l2_bytes: int, llc_bytes: int) -> dict:
    """The record to cache: the best of ``RUNS`` runs of ``measure``, levels put in physical
    order (``ordered``), and when and how it was measured."""
    started, start = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    load_before = os.getloadavg()
    figures = best([measure(bf16_matrix, l2_bytes, llc_bytes) for _ in range(RUNS)])
    figures, clamped = ordered(figures, lambda level: bandwidth(level, l2_bytes, llc_bytes))
    return {"host": {"threads": torch.get_num_threads(), "torch": torch.__version__},
            "figures": figures,
            "measured": {"at": started.isoformat(timespec="seconds"), "method": METHOD,
                         "runs": RUNS, "repeats": REPEATS, "seconds": round(time.perf_counter() - start, 3),
                         "sizes": {level: dict(zip(("threads", "bytes"), working_set(level, l2_bytes, llc_bytes)))
                                   for level in BANDWIDTHS},
                         "op_elements": host_microbench.OP_ELEMENTS * OP_REPS,
                         "loadavg": [round(x, 2) for x in load_before], "clamped": clamped}}


def best(runs: list) -> dict:
    """Per figure, the best of several runs: the highest bandwidth, size and FLOP/s, the
    lowest time per call and per element (load only ever slows a measurement down)."""
    out = {key: (min if key in TIMES else max)(run[key] for run in runs) for key in runs[0] if key != "op_ns"}
    out["op_ns"] = {op: {kind: min(run["op_ns"][op][kind] for run in runs) for kind in kinds}
                    for op, kinds in runs[0]["op_ns"].items()}
    return out


def ordered(figures: dict, remeasure) -> tuple:
    """``figures`` with the memory levels in physical order — all cores' private caches
    together at least as fast as the last-level cache, which is at least as fast as DRAM —
    and the list of figures clamped to get there.  A level slower than the next one is
    measured again (``remeasure(level)`` → GB/s, ``REMEASURES`` times, best kept), and
    clamped up to it only if that does not help: a figure measured under load is low."""
    figures = dict(figures)
    cores = torch.get_num_threads()
    scale = {"local_sram_gbps": cores, "llc_gbps": 1, "dram_gbps": 1}  # whole-chip GB/s
    clamped = []
    for faster, slower in ((BANDWIDTHS[1], BANDWIDTHS[2]), (BANDWIDTHS[0], BANDWIDTHS[1])):
        if figures[faster] * scale[faster] >= figures[slower] * scale[slower]:
            continue
        figures[faster] = max([figures[faster]] + [remeasure(faster) for _ in range(REMEASURES)])
        floor = figures[slower] * scale[slower] / scale[faster]
        if figures[faster] < floor:
            per_core = f" per core, x{cores} cores" if scale[faster] > 1 else ""
            warnings.warn(f"torch_hetero: host calibration measured {faster} = {figures[faster]:.4g} GB/s"
                          f"{per_core}, below {slower} = {figures[slower]:.4g} GB/s, also when measured "
                          f"again (a busy machine?); using {floor:.4g} GB/s. Run `python -m torch_hetero "
                          f"calibrate` on a quiet machine to measure again.")
            clamped.append({"figure": faster, "measured": figures[faster], "used": floor})
            figures[faster] = floor
    return figures, clamped


def load(cpu_model: str, cores: int, bf16_matrix: bool, l2_bytes: int, llc_bytes: int,
         force: bool = False) -> dict:
    """The cached record for this host (``calibrate``'s), measuring and caching it if missing
    or ``force``.  Measuring holds a lock next to the cache file: a process that finds it held
    waits and then reads what the other one measured (with ``force`` too, if the record
    changed while it waited)."""
    path = cache_path(cpu_model, cores, bf16_matrix)
    before = read(path, bf16_matrix)
    if before is not None and not force:
        return before
    with _locked(path + ".lock"):
        record = read(path, bf16_matrix)
        if record is not None and (not force or record != before):  # another process measured it meanwhile
            return record
        record = calibrate(bf16_matrix, l2_bytes, llc_bytes)
        record["host"] = {"cpu": cpu_model, "cores": cores, **record["host"]}
        _write(path, record)
        return record


def cache_path(cpu_model: str, cores: int, bf16_matrix: bool) -> str:
    key = json.dumps([RECORD_FORMAT, cpu_model, cores, torch.get_num_threads(), torch.__version__, bf16_matrix])
    return os.path.join(cache_dir(), "calibration", f"cpu-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json")


def _locked(path: str):
    """``cache.file_lock`` on ``path``; without a writable directory, no lock — the cache
    cannot be written either, so each process measures for itself."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()
    except OSError:
        return contextlib.nullcontext()
    return file_lock(path)


def _matmul_tflops(dtype) -> float:
    a = torch.rand(MATMUL_N, MATMUL_N).to(dtype)
    b = torch.rand(MATMUL_N, MATMUL_N).to(dtype)
    return 2 * MATMUL_N**3 / _best_seconds(lambda: torch.mm(a, b)) / 1e12


def _aten_call_us() -> float:
    bias, a, b = torch.ones(1), torch.ones(1, 1), torch.ones(1, 1)

    def calls():
        for _ in range(ATEN_CALLS - 1):
            torch.ops.aten.addmm.default(bias, a, b)
        return torch.ops.aten.addmm.default(bias, a, b)
    return _best_seconds(calls) / ATEN_CALLS * 1e6


def _convolution_figures(figures: dict) -> tuple:
    """(channels_last_speedup, convolution_efficiency), as ``measure`` describes them."""
    x = torch.rand(2, 64, 32, 32)
    weights = [torch.rand(128, 64, 1, 1), torch.rand(128, 1, 3, 3), torch.rand(64, 128, 1, 1)]

    def block(x):
        x = torch.conv2d(x, weights[0])
        x = torch.conv2d(x, weights[1], padding=1, groups=128)
        return torch.conv2d(x, weights[2])
    nchw = _best_seconds(lambda: block(x))
    pixels = 2 * 32 * 32
    flops = 2 * pixels * (64 * 128 + 128 * 9 + 128 * 64)
    nbytes = 4 * (pixels * (64 + 128 + 128 + 128 + 128 + 64) + sum(w.numel() for w in weights))
    roofline = max(flops / (figures["fp32_tflops"] * 1e12), nbytes / (figures["dram_gbps"] * 1e9))
    x = x.contiguous(memory_format=torch.channels_last)
    weights = [w.contiguous(memory_format=torch.channels_last) for w in weights]
    return nchw / _best_seconds(lambda: block(x)), min(1.0, roofline / nchw)


def _best_seconds(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up: thread pool, library dispatch
    best_time = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best_time = min(best_time, time.perf_counter() - start)
    return best_time


def read(path: str, bf16_matrix: bool):
    """The cached record, or None when missing, unreadable or incomplete (a figure missing,
    not a positive number, or no record of how it was measured)."""
    try:
        with open(path) as f:
            record = json.load(f)
        figures, measured = record["figures"], record["measured"]
        ok = isinstance(measured["at"], str) and isinstance(measured["method"], str)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    wanted = FIGURES + (["bf16_tflops"] if bf16_matrix else [])
    ok = ok and isinstance(figures, dict) and all(_positive(figures.get(k)) for k in wanted)
    ops = figures.get("op_ns") if ok else None
    ok = isinstance(ops, dict) and all(
        isinstance(ops.get(op), dict) and all(_positive(ops[op].get(kind), zero=True) for kind in kinds)
        for op, kinds in _PRICED.items())
    return record if ok else None


_PRICED = {**{op: ("vector", "scalar") + (("vector_inf",) if op in INFINITE_PRICED else ()) for op in VECTOR_PRICED},
           **{op: ("scalar",) for op in SCALAR_PRICED if op not in VECTOR_PRICED}}


def _positive(value, zero: bool = False) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if zero else value > 0)


def _write(path: str, record: dict) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, json.dumps(record, indent=1).encode())
    except OSError:
        pass  # an unwritable cache only means measuring again in the next process
