"""The collective cost model (``planning/collectives.py``) checked against reality twice.

1. Here: ``torch.distributed`` on gloo with 2 and 4 processes over loopback; all-reduce and
   all-gather timed over a size sweep (best of several), each beside the model's prediction
   for the host, whose link (latency, bandwidth) comes from a *separate* point-to-point
   measurement (``calibration/links.py``): the collectives are predicted, not fitted.
2. Published: bus-bandwidth figures for NVLink H100/A100 and xGMI MI300X systems (cited in
   ``PUBLISHED``) beside the model's bus bandwidth for the same collective on the profile.

    python benchmarks/collectives.py [--out benchmarks/results/collectives.md] [--skip-gloo]

Writes the two tables as markdown with the relative error (model / measured - 1)."""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

import torch

from torch_hetero.calibration.links import best_seconds, free_port, host_interconnect, init_gloo
from torch_hetero.device_models import get_profile
from torch_hetero.planning.collectives import collective

SIZES = [1 << 12, 1 << 16, 1 << 20, 1 << 22, 1 << 24]   # bytes per process (all-gather: its output)
WORLDS = (2, 4)
REPEATS = {1 << 12: 30, 1 << 16: 20, 1 << 20: 10}       # larger sizes: 5

# (what, profile, collective, devices, bytes, published bus GB/s, source)
PUBLISHED = [
    ("8x H100 SXM5, NVLink 4 + NVSwitch, all-reduce busbw at large sizes", "h100", "all_reduce", 8, 1 << 30,
     (460, 480), "Alaya NeW Cloud tech blog, 'NCCL-tests in practice' (2026-05-06), reference table"),
    ("8x A100 SXM4, NVLink 3 + NVSwitch, all-reduce busbw at large sizes", "a100", "all_reduce", 8, 1 << 30,
     (230, 250), "Alaya NeW Cloud tech blog, 'NCCL-tests in practice' (2026-05-06), reference table"),
    ("MI300X, one xGMI link, GPU-to-GPU bandwidth usable", "mi300x", "send", 2, 1 << 30,
     (48, 48), "AMD ROCm blog, 'Understanding RCCL Bandwidth and xGMI Performance on AMD Instinct MI300X' "
               "(2025-03-02): ~48 GB/s usable of 64 rated"),
]


def measure_gloo(world: int) -> dict:
    """{(kind, bytes): best seconds} for all-reduce and all-gather among ``world`` processes."""
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_collectives, args=(world, free_port(), out), nprocs=world, join=True,
                           start_method="spawn")
        with open(os.path.join(out, "times.json")) as f:
            return {(kind, int(size)): t for kind, size, t in json.load(f)}


def _collectives(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    init_gloo(rank, world, port)
    rows = []
    for size in SIZES:
        buffer = torch.ones(size // 4)
        chunk = torch.ones(size // 4 // world)
        gathered = [torch.empty_like(chunk) for _ in range(world)]
        for kind, call in (("all_reduce", lambda: dist.all_reduce(buffer)),
                           ("all_gather", lambda: dist.all_gather(gathered, chunk))):
            rows.append((kind, size, best_seconds(call, REPEATS.get(size, 5))))
    if rank == 0:
        with open(os.path.join(out, "times.json"), "w") as f:
            json.dump(rows, f)
    dist.barrier()
    dist.destroy_process_group()


def gloo_table() -> list:
    link = host_interconnect()
    host = get_profile("cpu")
    reduce_gbps = host.dram_gbps / host.compute_units   # one thread's share: gloo adds on one thread
    lines = [f"Host link (gloo ping-pong and a 4-byte all-reduce, `calibration/links.py`): latency "
             f"{link.latency_us:.0f} us, {link.link_gbps:.2f} GB/s one way, {link.call_us:.0f} us per collective "
             f"call; {link.links} cores share the copies.", "",
             "| collective | processes | bytes | measured | model | error |", "|---|---|---|---|---|---|"]
    errors = []
    for world in WORLDS:
        measured = measure_gloo(world)
        for (kind, size), seconds in sorted(measured.items()):
            model = collective(kind, size, world, link, reduce_gbps).seconds
            error = model / seconds - 1
            errors.append(abs(error))
            lines.append(f"| {kind} | {world} | {_size(size)} | {seconds * 1e6:.0f} us | {model * 1e6:.0f} us | "
                         f"{error:+.0%} |")
    lines += ["", f"Mean absolute error {sum(errors) / len(errors):.0%}, largest {max(errors):.0%}."]
    return lines


def published_table() -> list:
    lines = ["| system | measured busbw | model busbw | error | source |", "|---|---|---|---|---|"]
    for what, device, kind, world, size, (low, high), source in PUBLISHED:
        profile = get_profile(device)
        model = collective(kind, size, world, profile.interconnect, profile.dram_gbps).bus_gbps
        middle = (low + high) / 2
        shown = f"{low}-{high}" if low != high else f"{low}"
        lines.append(f"| {what} | {shown} GB/s | {model:.0f} GB/s | {model / middle - 1:+.0%} | {source} |")
    return lines


def _size(nbytes: int) -> str:
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "collectives.md"))
    parser.add_argument("--skip-gloo", action="store_true", help="only the published comparison")
    args = parser.parse_args(argv)
    text = ["# Collective cost model against measurements", "",
            "The model prices links at their rated bandwidth (`planning/collectives.py`).", ""]
    if not args.skip_gloo:
        text += ["## gloo on this host", "", *gloo_table(), ""]
    text += ["## Published bus bandwidths", "", *published_table(), ""]
    report = "\n".join(text)
    print(report)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(report)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
