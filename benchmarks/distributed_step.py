"""A compiled training step under DDP and FSDP2 on 2 gloo processes here, measured, beside the
deployment planner's estimate of the same step for the host profile at world size 2; and the
same step in this one process (all threads, no collectives) beside the estimate at world size
1, which separates the host cost model's error from the communication's.

    python benchmarks/distributed_step.py [--steps 8] [--batch 8] [--seq 128]
        [--out benchmarks/results/distributed_step.md]

Each process trains a TinyGPT (4 blocks, width 256) compiled with backend="hetero" on one
thread; the step is the median of ``--steps`` after two warm-up steps (forward, backward with
the collectives, Adam).  The planner traces the same model on the meta device and estimates
forward, backward, Adam and the collectives (host link: ``calibration/links.py``)."""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from torch_hetero.calibration.links import free_port, init_gloo
from torch_hetero.tools.examples import TinyGPT
from torch_hetero.tools.planner import plan

VOCAB, DIM, HEADS, LAYERS = 2048, 256, 4, 4


def model_of(seq: int):
    return TinyGPT(vocab=VOCAB, dim=DIM, heads=HEADS, layers=LAYERS, max_seq=seq)


def _train(rank: int, parallelism: str, batch: int, seq: int, steps: int, port: int, out: str) -> None:
    import torch_hetero  # noqa: F401  (registers the backend in the spawned process)
    init_gloo(rank, 2, port)
    torch.manual_seed(0)
    model = model_of(seq)
    if parallelism == "ddp":
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model)
    else:
        from torch.distributed.fsdp import fully_shard
        for block in model.blocks:
            fully_shard(block)
        model = fully_shard(model)
    step = torch.compile(model, backend="hetero")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(rank))
    times = []
    for i in range(steps + 2):
        dist.barrier()
        start = time.perf_counter()
        loss = step(tokens).float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        dist.barrier()
        if i >= 2:
            times.append(time.perf_counter() - start)
    if rank == 0:
        with open(os.path.join(out, f"{parallelism}.json"), "w") as f:
            json.dump(times, f)
    dist.destroy_process_group()


def measure(parallelism: str, batch: int, seq: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_train, args=(parallelism, batch, seq, steps, free_port(), out), nprocs=2, join=True,
                           start_method="spawn")
        with open(os.path.join(out, f"{parallelism}.json")) as f:
            return statistics.median(json.load(f))


def measure_here(model, tokens, steps: int) -> float:
    """The median compiled step in this process, on all its threads."""
    import torch_hetero  # noqa: F401
    step = torch.compile(model, backend="hetero")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        loss = step(tokens).float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "distributed_step.md"))
    args = parser.parse_args(argv)
    model = model_of(args.seq)
    tokens = torch.randint(0, VOCAB, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    estimated = plan(model, tokens, devices=["cpu"], mode="train", batch_sizes=[args.batch], world_sizes=[1, 2],
                     dtypes=["fp32"], progress=False)
    lines = [f"TinyGPT {LAYERS}x{DIM}, batch {args.batch} x {args.seq} per process, fp32, Adam; single: this "
             f"process on {torch.get_num_threads()} threads; ddp, fsdp: 2 gloo processes of 1 thread",
             "", "| | measured | estimated | error | the estimate's parts |", "|---|---|---|---|---|"]
    print(lines[0])
    for parallelism in ("single", "ddp", "fsdp"):
        config = next(c for c in estimated.configs if c.parallelism == parallelism)
        seconds = (measure_here(model, tokens, args.steps) if parallelism == "single"
                   else measure(parallelism, args.batch, args.seq, args.steps))
        lines.append(f"| {parallelism} | {seconds * 1e3:.1f} ms | {config.latency_s * 1e3:.1f} ms | "
                     f"{config.latency_s / seconds - 1:+.0%} | {'; '.join(config.reasons)} |")
        print(lines[-1], flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(["# A compiled DDP and FSDP2 step on 2 gloo processes against the planner", "", *lines,
                           "", "`python benchmarks/distributed_step.py`", ""]))


if __name__ == "__main__":
    sys.exit(main())
