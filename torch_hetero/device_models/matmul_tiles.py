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
