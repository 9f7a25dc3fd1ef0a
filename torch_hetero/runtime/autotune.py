"""max-autotune: each GEMM's analytic choice (``planning/gemm_choice.py``) confirmed by timing
a few candidates — the analytic tile, the library where the profile declares one, the tiles
around it (``gemm_choice.candidates``) — and the results kept on disk, keyed by (device name,
shape, dtype, candidates), so that a second compile of the same GEMM does not time again.

The timing is a function handed in, ``time_fn(candidate) -> seconds``: on a visible GPU the
compiler's (``compiler.gpu_timer``: our template compiled in the candidate's tile, or the
library through ATen, each run on the GPU); tests hand in their own.  ``tune`` returns the
``gemm_choice.Tuning`` the planner reads: the fastest template tile and the two times."""
from __future__ import annotations

import hashlib
import json
import os

from ..ir import MATMULS, ExternCall
from ..planning.gemm_choice import LIBRARY, Timed, Tuning, candidates
from ..planning.tiling import MatmulTiles, matmul_tile
from . import cache


def matmul_calls(graph) -> list:
    """The matmul extern calls of a lowered graph (each is a library call or our template)."""
    return [n for n in graph.nodes if isinstance(n, ExternCall) and n.op in MATMULS and n.kind == "extern"]


def tune(calls: list, profile, hints: dict, device: str, time_fn_for, root: str | None = None) -> Tuning:
    """Time every distinct GEMM shape of ``calls`` on ``device`` (its name: the cache key);
    ``time_fn_for(call)``: the time function of that call's candidates; ``root``: the cache
    directory (default: torch_hetero's)."""
    analytic, timed = MatmulTiles(profile, hints), {}
    for call in calls:
        shape = call.matmul_shape(hints)
        tile = analytic.of(call)
        if shape in timed or tile is None:
            continue
        options = candidates(tile, shape[-1], profile)
        times, cached = measure(device, shape, options, time_fn_for(call), root)
        timed[shape] = _timed(shape, options, times, cached, device, profile)
    return Tuning(timed)


def measure(device: str, shape: tuple, options: list, time_fn, root: str | None = None) -> tuple:
    """({candidate: µs}, whether they came from the cache) for one GEMM shape."""
    key = json.dumps({"device": device, "shape": [*shape[:4], str(shape[4]).replace("torch.", "")],
                      "candidates": options}, sort_keys=True)
    path = os.path.join(root or cache.cache_dir(), "autotune", hashlib.sha256(key.encode()).hexdigest() + ".json")
    try:
        with open(path) as f:
            stored = json.load(f)
        if stored["key"] == key:
            return {tuple(c): us for c, us in stored["times"]}, True
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not timed yet, or an unreadable entry: time again
    times = {tuple(c): time_fn(tuple(c)) * 1e6 for c in options}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cache.atomic_write(path, json.dumps({"key": key, "times": [[list(c), us] for c, us in times.items()]}).encode())
    return times, False


def _timed(shape: tuple, options: list, times: dict, cached: bool, device: str, profile) -> Timed:
    """The fastest template candidate (ties: the earlier one, the analytic tile first) and the library's time."""
    templates = [c for c in options if c != LIBRARY]
    best = min(templates, key=lambda c: (times[c], templates.index(c)))
    tile = matmul_tile(*best[1:], *shape, profile)
    library = times.get(LIBRARY)
    parts = [f"tile BM={best[1]} BN={best[2]} BK={best[3]} stages={best[4]} {times[best]:.3g} us"]
    if best != templates[0]:
        parts.append(f"analytic tile {times[templates[0]]:.3g} us")
    if library is not None:
        parts.append(f"library {library:.3g} us")
    summary = (f"max-autotune timed {len(options)} candidates on {device}{' (cached)' if cached else ''}: "
               + ", ".join(parts))
    return Timed(tile, times[best], library, summary)
