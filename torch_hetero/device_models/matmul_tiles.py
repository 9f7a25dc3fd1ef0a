"""The matmul tiles a Triton target stages in local SRAM, as data: the planner
(``tiling.plan_matmul``) chooses among them and the profile loader checks that the smallest
one fits, so that every profile that loads can be planned.

A tile is (BM, BN, BK): multiples of the profile's matrix-instruction shape for the dtype (or
of ``VECTOR_MATMUL_TILE`` without one), each at least ``MIN_DOT``, whose operand tiles are
staged ``stages`` times."""
from __future__ import annotations

MIN_DOT = 16                      # tl.dot needs every tile dim >= 16
VECTOR_MATMUL_TILE = (16, 16, 8)  # matmuls without a matrix instruction for the dtype: FMA tiles
STAGES = (2, 3, 4)
WIDEST_ELEMENT_BYTES = 8          # float64 (and int64): the widest elements an FMA tile stages
# A program's [BM, BN] fp32 accumulator lives in its registers: 128 x 256 is 128 KiB, half of an
# NVIDIA SM's 256 KiB register file (64K 32-bit registers), at 128 per thread over 8 warps.
# 256 x 256 would take the whole file and spills (seen on an H200: 0.08x cuBLAS at 4096^3).
MAX_ACCUMULATOR = 128 * 256
ACCUMULATOR_PER_WARP = 32 * 128   # elements: 32 threads x 128 registers each
MIN_WARPS = 4                     # one warp group: Hopper's wgmma is issued by 4 warps


def matmul_warps(bm: int, bn: int) -> int:
    """Warps per program for a BM×BN tile: enough that each thread holds at most 128
    accumulator registers (128x128: 4, 128x256: 8)."""
    return max(MIN_WARPS, bm * bn // ACCUMULATOR_PER_WARP)


def smallest_dim(base: int) -> int:
    """The first multiple of an instruction dim ``base`` that ``tl.dot`` accepts."""
    return base * -(-MIN_DOT // base)


def smallest_tile(base: tuple) -> tuple:
    """(BM, BN, BK) of the smallest tile built on the instruction shape ``base``."""
    return tuple(smallest_dim(b) for b in base)


def staged_bytes(bm: int, bn: int, bk: int, itemsize: int, stages: int) -> int:
    """Local SRAM one program needs: ``stages`` copies of the BM×BK and BK×BN operand tiles."""
    return (bm * bk + bk * bn) * itemsize * stages


def smallest_staged_bytes(base: tuple, itemsize: int) -> int:
    """Local SRAM the smallest tile on ``base`` needs, in the fewest stages."""
    return staged_bytes(*smallest_tile(base), itemsize, min(STAGES))
