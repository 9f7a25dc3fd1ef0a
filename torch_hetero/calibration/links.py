"""The host's link between processes, measured: two processes on ``torch.distributed``'s gloo
backend over loopback send messages back and forth (ping-pong), and the latency and bandwidth
of one message one way become the ``cpu`` profile's interconnect (``topology = "host"``: the
processes' copies share the cores).

Only point-to-point messages are measured; the collectives (``planning/collectives.py``)
are predicted from them, so ``benchmarks/collectives.py`` can set measured all-reduce and
all-gather times beside an honest prediction.  Measured when first asked (a few seconds:
two processes start and import torch), cached as JSON next to the host's calibration."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
import tempfile
import time

import torch

from ..device_models.host import identity
from ..device_models.interconnect import Interconnect
from ..runtime.cache import cache_dir
from .calibrate import _locked, _write

SIZES = [4, 1 << 10, 1 << 16, 1 << 20, 1 << 22, 1 << 24]   # bytes per message
ROUND_TRIPS = {4: 50, 1 << 10: 50, 1 << 16: 20}            # per size; larger ones: LARGE_TRIPS
LARGE_TRIPS = 5
PROCESSES_PER_HOST = 64   # the domain: processes on one host reach each other; no scale-out
RECORD_FORMAT = 2


def host_interconnect(force: bool = False) -> Interconnect:
    """This host's loopback link as an Interconnect, measured once and cached (``force``: again)."""
    record = _load(force)
    cores = identity()[1]
    return Interconnect("host", record["link_gbps"], cores, PROCESSES_PER_HOST, record["latency_us"],
                        record["call_us"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_gloo(rank: int, world: int, port: int) -> None:
    """Join a gloo process group over loopback, one thread per process (what the host model assumes)."""
    import torch.distributed as dist
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback: the hostname may resolve elsewhere
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))


def measure() -> dict:
    """One run: {"latency_us", "link_gbps", "call_us", "one_way_us": {bytes: µs}}.  The latency
    is the smallest message's one-way time; the bandwidth, the best of the two largest sizes
    with that latency taken off; a collective call's fixed cost, a 4-byte all-reduce's time
    less its two messages (a ring of 2 sends twice)."""
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_ping_pong, args=(free_port(), out), nprocs=2, join=True, start_method="spawn")
        with open(os.path.join(out, "times.json")) as f:
            one_way = {int(k): v for k, v in json.load(f).items()}
    all_reduce = one_way.pop(-1)
    latency = one_way[SIZES[0]]
    gbps = max(size / (one_way[size] - latency) / 1e9 for size in SIZES[-2:])
    return {"latency_us": latency * 1e6, "link_gbps": gbps, "call_us": max(all_reduce - 2 * latency, 0.0) * 1e6,
            "one_way_us": {s: t * 1e6 for s, t in one_way.items()}}


def _ping_pong(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    init_gloo(rank, 2, port)
    peer = 1 - rank

    def round_trip(buffer):
        if rank == 0:
            dist.send(buffer, peer)
            dist.recv(buffer, peer)
        else:
            dist.recv(buffer, peer)
            dist.send(buffer, peer)
    times = {size: best_seconds(lambda: round_trip(torch.zeros(size // 4)), ROUND_TRIPS.get(size, LARGE_TRIPS)) / 2
             for size in SIZES}
    times[-1] = best_seconds(lambda: dist.all_reduce(torch.zeros(1)), ROUND_TRIPS[SIZES[0]])
    if rank == 0:
        with open(os.path.join(out, "times.json"), "w") as f:
            json.dump(times, f)
    dist.barrier()
    dist.destroy_process_group()


def best_seconds(call, repeats: int) -> float:
    """The best of ``repeats`` timings of ``call`` (after a warm-up), every process starting together."""
    import torch.distributed as dist
    best = float("inf")
    for _ in range(repeats + 1):
        dist.barrier()
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _load(force: bool) -> dict:
    path = _path()
    if not force:
        record = _read(path)
        if record is not None:
            return record
    with _locked(path + ".lock"):
        record = None if force else _read(path)
        if record is None:
            record = {**measure(), "measured": {"at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                                                "method": "gloo ping-pong over loopback, 2 processes, 1 thread each"}}
            _write(path, record)
        return record


def _path() -> str:
    key = json.dumps([RECORD_FORMAT, *identity()[:2], torch.__version__])
    return os.path.join(cache_dir(), "calibration", f"links-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json")


def _read(path: str):
    try:
        with open(path) as f:
            record = json.load(f)
        ok = all(isinstance(record[k], (int, float)) and record[k] > 0 for k in ("latency_us", "link_gbps"))
        ok = ok and isinstance(record["call_us"], (int, float)) and record["call_us"] >= 0
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return record if ok else None
