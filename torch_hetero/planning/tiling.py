"""Block and tile sizes from the device profile — analytically, in microseconds, with no
benchmarking.

* A generated kernel (a group of nodes, see ``loop_nest``) gets a reduction strategy from
  local SRAM: **one-pass** when one outer iteration's working set (``row_bytes``) fits a
  unit's local SRAM, so later passes over the row re-read it on chip; **looped** when it
  does not, so each pass streams the row again.  Triton targets also get ``XBLOCK`` (outer
  iterations per program) and ``RBLOCK`` (row elements per step), powers of two whose tile
  fits local SRAM and leaves enough programs for every unit; the host C++ target steps
  through rows one SIMD vector at a time.
* A matmul gets (BM, BN, BK, stages): multiples of the profile's matrix-instruction shape,
  staged operand tiles (BM·BK + BK·BN)·bytes·stages within local SRAM, chosen to minimise
  estimated time including padding waste, wave quantization over the units and pipelining.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Optional

import torch

from ..device_models.matmul_tiles import STAGES, VECTOR_MATMUL_TILE, smallest_dim, staged_bytes
from .cost_model import dtype_name, online, parallel_efficiency, row_fits
from .kernel_analysis import KernelCost

MAX_PROGRAM_ELEMENTS = 4096    # XBLOCK·RBLOCK a Triton program steps through at once, if not a whole row
MAX_TILE = (256, 256, 128)
# FMA tiles (no matrix instruction for the dtype: fp32 stays IEEE) hold their operands in
# registers: larger ones spill on cuda:80 (ahead-of-time builds, tests/test_aot_resources.py:
# BM=16 BN=64 BK=128 and BM=BN=128 spill, BM=BN=64 BK=32 does not)
MAX_FMA_TILE = (64, 64, 32)


@dataclasses.dataclass(frozen=True)
class KernelTiling:
    strategy: str        # "pointwise" | "one-pass" | "looped"
    xblock: int
    rblock: int
    working_set: int     # bytes of local SRAM one program's tile needs
    online: tuple = ()   # looped: (max, sum) computed in one pass over the row (``online``)

    def __str__(self) -> str:
        strategy = f"{self.strategy}, online max+sum" if self.online else self.strategy
        return f"{strategy} XBLOCK={self.xblock} RBLOCK={self.rblock} tile {_kib(self.working_set)}"


@dataclasses.dataclass(frozen=True)
class MatmulTiling:
    bm: int
    bn: int
    bk: int
    stages: int
    smem: int            # bytes of staged operand tiles
    waves: float         # output tiles / units
    padding: float       # fraction of the padded work that is waste
    seconds: float       # its estimated time (compute or operand traffic, whichever is longer)

    def __str__(self) -> str:
        return (f"BM={self.bm} BN={self.bn} BK={self.bk} stages={self.stages} smem {_kib(self.smem)}, "
                f"{self.waves:.2f} waves, {self.padding:.0%} padding")


def plan_kernel(cost: KernelCost, profile, reduction: bool) -> KernelTiling:
    bytes_per_element = max(int(cost.row_bytes / max(cost.row_elements, 1)), 1)
    one_pass = row_fits(cost, profile)
    strategy = "pointwise" if not reduction else ("one-pass" if one_pass else "looped")
    if profile.target.host_threads:
        rblock = profile.simd_width
        working_set = int(cost.row_bytes) if one_pass else rblock * bytes_per_element
        return KernelTiling(strategy, 1, rblock, working_set)
    sram = profile.local_sram_bytes
    if reduction and one_pass:  # the whole row at once: it stays in local SRAM for every pass
        rblock = _pow2_at_least(cost.row_elements)
    else:  # blocks of a row (pointwise programs split rows; looped reductions step through them)
        rblock = min(_pow2_at_least(cost.row_elements),
                     _pow2_at_most(min(sram // bytes_per_element, MAX_PROGRAM_ELEMENTS)))
    xblock = 1
    rows_per_unit = max(int(cost.rows // profile.compute_units), 1)
    while (xblock * 2 <= rows_per_unit and xblock * 2 * rblock <= MAX_PROGRAM_ELEMENTS
           and xblock * 2 * rblock * bytes_per_element <= sram):
        xblock *= 2
    return KernelTiling(strategy, xblock, rblock, xblock * rblock * bytes_per_element,
                        cost.online if online(cost, profile) else ())


class MatmulTiles:
    """Each matmul's tile on one profile, computed once per shape: fusion's SRAM check, the
    plan (schedule text, explain) and the generated GEMM read the same one."""

    def __init__(self, profile, hints: dict, tuning=None):
        self.profile, self.hints, self.tuning = profile, hints, tuning
        self._tiles: dict = {}

    def of(self, call) -> Optional[MatmulTiling]:
        """The tile of the extern ``call`` (None: not a matmul, or the host's GEMM is ATen's):
        the one max-autotune timed fastest, if it timed this shape, else the analytic one."""
        shape = call.matmul_shape(self.hints)
        if shape is None:
            return None
        if shape not in self._tiles:
            timed = self.timed(call)
            self._tiles[shape] = timed.tile if timed is not None else plan_matmul(*shape, self.profile)
        return self._tiles[shape]

    def timed(self, call):
        """What max-autotune measured for ``call``'s shape (``gemm_choice.Timed``), or None."""
        return None if self.tuning is None else self.tuning.timed.get(call.matmul_shape(self.hints))


def plan_matmul(batch: int, m: int, n: int, k: int, dtype: torch.dtype, profile) -> Optional[MatmulTiling]:
    """The best tile for ``profile``, or None where the GEMM is a library call (the host: ATen's)."""
    if not profile.target.matmul_epilogue:
        return None
    best = None
    for bm, bn, bk in itertools.product(*(_multiples(b, top) for b, top in zip(instruction_tile(dtype, profile),
                                                                             largest_tile(dtype, profile)))):
        for stages in STAGES:
            tile = matmul_tile(bm, bn, bk, stages, batch, m, n, k, dtype, profile)
            if tile is None:
                continue
            key = (tile.seconds, stages, -bm * bn, -bk, bm, bn)
            if best is None or key < best[0]:
                best = (key, tile)
    return best[1] if best else None


def matmul_tile(bm: int, bn: int, bk: int, stages: int, batch: int, m: int, n: int, k: int, dtype: torch.dtype,
                profile) -> Optional[MatmulTiling]:
    """The tile (BM, BN, BK, stages) for this GEMM with its estimated time, or None if its
    staged operands do not fit local SRAM."""
    name = dtype_name(dtype)
    matrix = name in profile.matrix_shapes  # fp32 stays IEEE (as eager): vector FMAs, not TF32
    peak = profile.peak_flops(name if matrix else "fp32", matrix=matrix)
    itemsize = dtype.itemsize
    smem = staged_bytes(bm, bn, bk, itemsize, stages)
    if smem > profile.local_sram_bytes:
        return None
    tiles = batch * math.ceil(m / bm) * math.ceil(n / bn)
    padded_k = max(math.ceil(k / bk), 1) * bk  # k == 0 still zeroes and stores each output tile
    padded = 2.0 * tiles * bm * bn * padded_k
    # a pipeline of ``stages`` hides all but 1 / (2 * stages) of each step's load latency
    compute = padded / (peak * parallel_efficiency(tiles, profile.compute_units)) / (1 - 0.5 / stages)
    memory = tiles * (bm + bn) * padded_k * itemsize / (profile.llc_gbps * 1e9)
    waste = 1 - 2.0 * batch * m * n * k / padded if padded else 0.0  # a zero size: no work
    return MatmulTiling(bm, bn, bk, stages, smem, tiles / profile.compute_units, waste, max(compute, memory))


def instruction_tile(dtype: torch.dtype, profile) -> tuple:
    """The (m, n, k) every tile dim is a multiple of: the matrix instruction for ``dtype``, or
    the FMA tile without one."""
    name = dtype_name(dtype)
    return tuple(profile.matrix_shapes[name]) if name in profile.matrix_shapes else VECTOR_MATMUL_TILE


def largest_tile(dtype: torch.dtype, profile) -> tuple:
    """The largest (BM, BN, BK) the planner considers for ``dtype``."""
    return MAX_TILE if dtype_name(dtype) in profile.matrix_shapes else MAX_FMA_TILE


def _multiples(base: int, top: int) -> list:
    """Multiples of ``base`` (doubling) from the first one ``tl.dot`` accepts (16) to ``top``."""
    out, value = [], smallest_dim(base)
    while value <= max(top, base):
        out.append(value)
        value *= 2
    return out


def _pow2_at_least(n: float) -> int:
    return 1 << max(math.ceil(math.log2(max(n, 1))), 0)


def _pow2_at_most(n: float) -> int:
    return 1 << max(int(math.floor(math.log2(max(n, 1)))), 0)


def _kib(nbytes: float) -> str:
    return f"{nbytes / 1024:.4g} KiB"
