"""Distributed training through torch.distributed, not through us: two processes on gloo over
loopback train a small transformer compiled with backend="hetero" under DistributedDataParallel
and under FSDP2 (``fully_shard`` per block) for a few steps; the parameters match the same run
in eager.  The planner's estimate of such a step beside its measured time:
benchmarks/distributed_step.py."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from torch_hetero.calibration.links import free_port, init_gloo
from torch_hetero.tools.examples import TinyGPT
from utils import compile_hetero

STEPS = 3


def _wrap(model, parallelism: str):
    if parallelism == "ddp":
        return DistributedDataParallel(model)
    from torch.distributed.fsdp import fully_shard
    for block in model.blocks:
        fully_shard(block)
    return fully_shard(model)


def _train(rank: int, world: int, port: int, parallelism: str, compiled: bool, out_dir: str) -> None:
    init_gloo(rank, world, port)
    torch.manual_seed(0)
    model = _wrap(TinyGPT(vocab=64, dim=32, heads=2, layers=2, max_seq=16), parallelism)
    step_fn = compile_hetero(model, native=True) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(100 + rank)  # each rank sees its own data
    for _ in range(STEPS):
        tokens = torch.randint(0, 64, (2, 16), generator=generator)
        logits = step_fn(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    state = model.module.state_dict() if parallelism == "ddp" else model.state_dict()
    state = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach() for k, v in state.items()}
    if rank == 0:
        torch.save(state, os.path.join(out_dir, f"{'compiled' if compiled else 'eager'}.pt"))
    # every rank done, and DDP's pending Python callbacks gone, before the process group joins
    # its threads (destroying it with work in flight can deadlock on the GIL)
    dist.barrier()
    del model, step_fn, optimizer
    dist.destroy_process_group()


@pytest.mark.parametrize("parallelism", ["ddp", "fsdp"])
def test_distributed_training_matches_eager(parallelism, tmp_path):
    for compiled in (False, True):
        mp.start_processes(_train, args=(2, free_port(), parallelism, compiled, str(tmp_path)), nprocs=2,
                           join=True, start_method="spawn")
    eager, compiled = torch.load(tmp_path / "eager.pt"), torch.load(tmp_path / "compiled.pt")
    assert eager.keys() == compiled.keys()
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-4, atol=1e-5, msg=name)
    torch.manual_seed(0)
    initial = TinyGPT(vocab=64, dim=32, heads=2, layers=2, max_seq=16)
    assert any(not torch.equal(eager[k], v) for k, v in initial.state_dict().items())  # it trained
