"""Distributed training through torch.distributed, not through us: two processes on gloo over
loopback train a small transformer with torch.compile(DistributedDataParallel(model),
backend="hetero") for a few steps; the parameters match the same run in eager."""
import datetime
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from torch_hetero.tools.examples import TinyGPT
from utils import compile_hetero

STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(rank: int, world: int, port: int, compiled: bool, out_dir: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback: the hostname may resolve elsewhere
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = DistributedDataParallel(TinyGPT(vocab=64, dim=32, heads=2, layers=2, max_seq=16))
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
    if rank == 0:
        torch.save({k: v.detach() for k, v in model.module.state_dict().items()},
                   os.path.join(out_dir, "compiled.pt" if compiled else "eager.pt"))
    # every rank done, and DDP's pending Python callbacks gone, before the process group joins
    # its threads (destroying it with work in flight can deadlock on the GIL)
    dist.barrier()
    del model, step_fn, optimizer
    dist.destroy_process_group()


def test_ddp_training_matches_eager(tmp_path):
    for compiled in (False, True):
        mp.start_processes(_train, args=(2, _free_port(), compiled, str(tmp_path)), nprocs=2, join=True,
                           start_method="spawn")
    eager, compiled = torch.load(tmp_path / "eager.pt"), torch.load(tmp_path / "compiled.pt")
    assert eager.keys() == compiled.keys()
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-4, atol=1e-5, msg=name)
    torch.manual_seed(0)
    initial = TinyGPT(vocab=64, dim=32, heads=2, layers=2, max_seq=16)
    assert any(not torch.equal(eager[k], v) for k, v in initial.state_dict().items())  # it trained
