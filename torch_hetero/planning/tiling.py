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
  estimated time including padding waste, wave quantization over the units and pipelining;
  and GROUP_M, the tile rows its launch order groups (L2 swizzle) so that a wave of programs
  reads few operand rows and columns from DRAM (``group_rows``).  Where few output tiles
  leave units idle and K is long, K is split: each of ``split_k`` programs per output tile
  sums one slice of K into fp32 partials, and the last of them to finish adds the partials
  in slice order (deterministic, no float atomics) and applies the epilogue; the split is a
  candidate of the same search, priced with its partials' traffic.  The fp32 accumulator
  bounds BM·BN (``MAX_ACCUMULATOR``: registers) and sets the launch's warps; the K step
  spans at least ``MIN_K_STEP_BYTES``; ties go to the deeper pipeline, launched with its
  stages (``MatmulTiling.launch_options``).
* A generated flash attention gets (BR, BC, stages): BR query rows per program, BC keys per
  step, multiples of the matrix-instruction shape; what one program holds (its query rows, the
  staged key/value blocks, the fp32 accumulator and score block; backward: the key/value rows,
  their gradients and the staged query-side rows) within local SRAM.  Larger BR re-reads K and
  V fewer times but leaves fewer programs for the units, so long rows pick BR by that trade,
  as far as the unit's local memory allows.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Optional

import sympy
import torch

from ..device_models.matmul_tiles import (MAX_ACCUMULATOR, STAGES, VECTOR_MATMUL_TILE, matmul_warps, smallest_dim,
                                          staged_bytes)
from .cost_model import (PARTIAL_BYTES, attention_work, dtype_name, online, parallel_efficiency, row_fits,
                         split_k_seconds)
from .kernel_analysis import KernelCost

MAX_PROGRAM_ELEMENTS = 4096    # XBLOCK·RBLOCK a Triton program steps through at once, if not a whole row
MAX_TILE = (256, 256, 128)
SPLITS = (1, 2, 4, 8, 16, 32, 64)  # K slices per output tile a split GEMM may run
MIN_SPLIT_STEPS = 4      # BK steps each K slice runs at least, so that its pipeline fills
# A matrix-instruction tile's K step spans at least 64 bytes of each operand row: narrower steps
# load half-used 32-byte sectors and lose the 64/128-byte shared-memory swizzles, which the
# K padding they save does not repay (the model prices neither; an H200 run's slowest tile,
# 0.03x cuBLAS, was a BK=16 one)
MIN_K_STEP_BYTES = 64
# FMA tiles (no matrix instruction for the dtype: fp32 stays IEEE) hold their operands in
# registers: larger ones spill on cuda:80 (ahead-of-time builds, tests/test_aot_resources.py:
# BM=16 BN=64 BK=128 and BM=BN=128 spill, BM=BN=64 BK=32 does not)
MAX_FMA_TILE = (64, 64, 32)
# A GEMM whose operands are converted as they are loaded (``ExternCall.converts_operands``: fp8
# bytes bitcast, int8 weights rounded to bf16) holds them in registers on their way to tl.dot, which
# the device model does not size.  Ahead-of-time builds at Triton's default 4 warps, with a SiLU
# epilogue: BM=64 BN=128 spills on cuda:90 (fp8 128 B per thread at BK=64) and cuda:80 (int8
# weights, 24 B), BM=128 BN=64 spills 568-672 B, and BM=BN=64 spills at BK=32 (cuda:80, 16 B)
# while at BK=128 it takes 124-164 registers on both (test_int8.py, test_float8.py build them).
CONVERTED_OPERAND_TILE = (64, 64, 128)   # the largest BM and BN, and the only BK


@dataclasses.dataclass(frozen=True)
class KernelTiling:
    strategy: str        # "pointwise" | "one-pass" | "looped"
    xblock: int
    rblock: int
    working_set: int     # bytes of local SRAM one program's tile needs
    online: object = None  # looped: the OnlinePair computed in one pass over the row (``online``)

    def __str__(self) -> str:
        strategy = f"{self.strategy}, online {self.online.kind}" if self.online else self.strategy
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
    seconds: float       # its estimated time (compute or operand traffic, whichever is longer, and a split's partials)
    group_m: int = 1     # tile rows that consecutive programs share (L2 swizzle; 1: row-major order)
    group_why: str = ""  # the L2 figures that chose ``group_m``
    split_k: int = 1     # programs per output tile, each over one slice of K (1: no split)
    split_why: str = ""  # the figures that chose ``split_k`` > 1

    def __str__(self) -> str:
        split = f", split-K {self.split_k} ({self.split_why})" if self.split_k > 1 else ""
        return (f"BM={self.bm} BN={self.bn} BK={self.bk} stages={self.stages} smem {_kib(self.smem)}, "
                f"{self.waves:.2f} waves, {self.padding:.0%} padding, GROUP_M={self.group_m} ({self.group_why}){split}")

    @property
    def warps(self) -> int:
        return matmul_warps(self.bm, self.bn)

    @property
    def launch_options(self) -> tuple:
        """What the launch passes Triton: the warps the accumulator needs and the stages the
        SRAM budget was priced at (Triton's defaults, 4 and 3, can overflow shared memory)."""
        return (("num_warps", self.warps), ("num_stages", self.stages))

    def partial_bytes(self, batch: int, m: int, n: int) -> int:
        """The fp32 partials a split GEMM writes and its last programs read back (0: no split)."""
        if self.split_k == 1:
            return 0
        tiles = batch * math.ceil(m / self.bm) * math.ceil(n / self.bn)
        return self.split_k * tiles * self.bm * self.bn * PARTIAL_BYTES


@dataclasses.dataclass(frozen=True)
class AttentionTiling:
    br: int              # query rows per program
    bc: int              # keys per step of the online softmax
    bd: int              # the head dim's block (a power of two >= 16, masked past D)
    stages: int
    smem: int            # bytes one program holds in local SRAM
    sram: int            # the profile's local SRAM per unit: the limit the tile was chosen within
    waves: float         # programs / units
    warps: Optional[int] = None  # a GPU's warps per program (Triton's num_warps; None: its default)

    def __str__(self) -> str:
        warps = f", {self.warps} warps (GPU_ATTENTION_TILES)" if self.warps else ""
        return (f"BR={self.br} BC={self.bc} BD={self.bd} stages={self.stages} smem {_kib(self.smem)} "
                f"of {_kib(self.sram)} local SRAM, {self.waves:.2f} waves{warps}")


def plan_kernel(cost: KernelCost, profile, reduction: bool, sort_row=None) -> KernelTiling:
    """``sort_row``: the length of the row the kernel sorts (``ir.Sort``), if it sorts."""
    bytes_per_element = max(int(cost.row_bytes / max(cost.row_elements, 1)), 1)
    one_pass = row_fits(cost, profile)
    strategy = "pointwise" if not reduction else ("one-pass" if one_pass else "looped")
    if profile.target.host_threads:
        rblock = profile.simd_width
        working_set = int(cost.row_bytes) if one_pass else rblock * bytes_per_element
        return KernelTiling(strategy, 1, rblock, working_set)
    if sort_row is not None:
        return _plan_sort(cost, profile, sort_row)
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
                        cost.online if online(cost, profile) else None)


def _plan_sort(cost: KernelCost, profile, row) -> KernelTiling:
    """A sort's blocks (``codegen.triton_sort``): a row of a known length that fits one block
    sorts in a bitonic network, ``XBLOCK`` rows a program; any other compares blocks of the row
    pairwise, ``[XBLOCK, RBLOCK, RBLOCK]`` at once (a position's rank counts the positions
    ordered before it), so that cube, not a row's block, is what ``MAX_PROGRAM_ELEMENTS``
    bounds (its working set: the cube of flags)."""
    whole = _pow2_at_least(int(row)) if sympy.sympify(row).is_number else None
    bitonic = whole is not None and whole <= MAX_PROGRAM_ELEMENTS
    rblock = whole if bitonic else min(_pow2_at_least(cost.row_elements),
                                       _pow2_at_most(int(math.isqrt(MAX_PROGRAM_ELEMENTS))))
    per_program = rblock if bitonic else rblock * rblock
    xblock = 1
    rows_per_unit = max(int(cost.rows // profile.compute_units), 1)
    while xblock * 2 <= rows_per_unit and xblock * 2 * per_program <= MAX_PROGRAM_ELEMENTS:
        xblock *= 2
    working_set = xblock * rblock * 16 if bitonic else xblock * per_program  # (key, position) pairs; flags
    return KernelTiling("bitonic" if bitonic else "pairwise ranks", xblock, rblock, working_set)


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
        key = (shape, call.converts_operands)
        if key not in self._tiles:
            timed = self.timed(call)
            self._tiles[key] = timed.tile if timed is not None else plan_matmul(*shape, self.profile, key[1])
        return self._tiles[key]

    def timed(self, call):
        """What max-autotune measured for ``call``'s shape (``gemm_choice.Timed``), or None."""
        return None if self.tuning is None else self.tuning.timed.get(call.matmul_shape(self.hints))


def plan_matmul(batch: int, m: int, n: int, k: int, dtype: torch.dtype, profile,
                converted: bool = False) -> Optional[MatmulTiling]:
    """The best tile for ``profile``, or None where the GEMM is a library call (the host: ATen's);
    ``converted``: its operands are converted as they are loaded (``CONVERTED_OPERAND_TILE``)."""
    if not profile.target.matmul_epilogue:
        return None
    best = None
    largest = largest_tile(dtype, profile)
    matrix = dtype_name(dtype) in profile.matrix_shapes
    if converted:
        largest = tuple(min(a, b) for a, b in zip(largest, CONVERTED_OPERAND_TILE))
    for bm, bn, bk in itertools.product(*(_multiples(b, top) for b, top in zip(instruction_tile(dtype, profile),
                                                                             largest))):
        if (converted and bk != largest[2]) or (matrix and bk * dtype.itemsize < MIN_K_STEP_BYTES):
            continue
        for stages in STAGES:  # integer sums are not split: the partials are fp32
            tile = _priced_tile(bm, bn, bk, stages, batch, m, n, k, dtype, profile,
                                None if dtype.is_floating_point else (1,))
            if tile is None:
                continue
            key = (tile.seconds, tile.split_k, -stages, -bm * bn, -bk, bm, bn)
            if best is None or key < best[0]:
                best = (key, tile)
    return _in_launch_order(best[1], batch, m, n, k, dtype, profile) if best else None


def matmul_tile(bm: int, bn: int, bk: int, stages: int, batch: int, m: int, n: int, k: int, dtype: torch.dtype,
                profile, splits: Optional[tuple] = None) -> Optional[MatmulTiling]:
    """The tile (BM, BN, BK, stages) for this GEMM with its split of K (the fastest of
    ``splits``, default ``SPLITS``), its launch order (``group_rows``) and its estimated time, or None if its staged
    operands do not fit local SRAM."""
    tile = _priced_tile(bm, bn, bk, stages, batch, m, n, k, dtype, profile, splits)
    return _in_launch_order(tile, batch, m, n, k, dtype, profile) if tile else None


def _in_launch_order(tile: MatmulTiling, batch: int, m: int, n: int, k: int, dtype: torch.dtype,
                     profile) -> MatmulTiling:
    group_m, why = group_rows(batch, m, n, k, tile.bm, tile.bn, dtype.itemsize, profile)
    return dataclasses.replace(tile, group_m=group_m, group_why=why)


def _priced_tile(bm: int, bn: int, bk: int, stages: int, batch: int, m: int, n: int, k: int, dtype: torch.dtype,
                 profile, splits: Optional[tuple] = None) -> Optional[MatmulTiling]:
    """``matmul_tile`` before its launch order, which only the chosen tile needs."""
    name = dtype_name(dtype)
    matrix = name in profile.matrix_shapes  # fp32 stays IEEE (as eager): vector FMAs, not TF32
    peak = profile.peak_flops(name if matrix else "fp32", matrix=matrix)
    itemsize = dtype.itemsize
    smem = staged_bytes(bm, bn, bk, itemsize, stages)
    if smem > profile.local_sram_bytes or bm * bn > MAX_ACCUMULATOR:
        return None
    tiles = batch * math.ceil(m / bm) * math.ceil(n / bn)
    padded_k = max(math.ceil(k / bk), 1) * bk  # k == 0 still zeroes and stores each output tile
    padded = 2.0 * tiles * bm * bn * padded_k
    memory = tiles * (bm + bn) * padded_k * itemsize / (profile.llc_gbps * 1e9)
    best = None
    for split in (s for s in splits or SPLITS if s == 1 or k >= s * MIN_SPLIT_STEPS * bk):
        # a pipeline of ``stages`` hides all but 1 / (2 * stages) of each step's load latency
        compute = padded / (peak * parallel_efficiency(tiles * split, profile.compute_units)) / (1 - 0.5 / stages)
        partials = split_k_seconds(split * tiles * bm * bn * PARTIAL_BYTES, profile) if split > 1 else 0.0
        if best is None or max(compute, memory) + partials < best[0]:  # ties: fewer slices
            best = (max(compute, memory) + partials, split)
    seconds, split = best
    waste = 1 - 2.0 * batch * m * n * k / padded if padded else 0.0  # a zero size: no work
    split_why = ""
    if split > 1:
        split_why = (f"{tiles} output tiles for {profile.compute_units} units: K={k} in {split} slices, "
                     f"fp32 partials {_kib(split * tiles * bm * bn * PARTIAL_BYTES)}")
    return MatmulTiling(bm, bn, bk, stages, smem, tiles / profile.compute_units, waste, seconds,
                        split_k=split, split_why=split_why)


def group_rows(batch: int, m: int, n: int, k: int, bm: int, bn: int, itemsize: int, profile) -> tuple:
    """(GROUP_M, why): the grouping of output tile rows whose wave — the ``compute_units``
    programs running at once — reads the fewest operand bytes, and the figures that chose it.
    Programs run GROUP_M tile rows down each tile column before moving right, so a wave reads
    ~GROUP_M row panels of A and U/GROUP_M column panels of B instead of one or two rows of A
    and all of B.  Where both operands fit the last-level SRAM (L2) together, DRAM reads each
    once in any order: row-major order (GROUP_M=1)."""
    operands = batch * (m + n) * k * itemsize
    if operands <= profile.llc_bytes:
        return 1, f"operands {_mib(operands)} fit L2 {_mib(profile.llc_bytes)}"
    rows, cols, units = math.ceil(m / bm), math.ceil(n / bn), profile.compute_units

    def wave_bytes(group: int) -> int:
        group = min(group, rows)
        touched_cols = min(math.ceil(units / group), cols)
        touched_rows = min(max(group, math.ceil(units / cols)), rows)
        return (touched_rows * bm + touched_cols * bn) * k * itemsize

    candidates = [1 << e for e in range(max(rows, 1).bit_length())]  # powers of two up to the tile rows
    group = min(candidates, key=lambda g: (wave_bytes(g), g))
    return group, (f"operands {_mib(operands)} > L2 {_mib(profile.llc_bytes)}: a wave reads "
                   f"{_mib(wave_bytes(group))}, {_mib(wave_bytes(1))} in row order")


MAX_ATTENTION_BLOCK = 256
# On a GPU (a profile naming a Triton backend target) an attention program's score block,
# accumulators and operand blocks live in registers, which the device model does not size:
# the (BR, BC, warps) that build for cuda:90 with no spill and some margin (those measured at
# 250+ of its 255 registers left out: near the limit a tile spills at some shapes; see
# benchmarks/gpu_tile_builds.py), by (16-bit or fp32 inputs,
# backward, BD), measured ahead of time and kept so by tests/test_generated_attention.py
# (test_gpu_attention_tiles_build_without_spills).  Smaller head dims take BD=64's tiles;
# none measured for a pair: no generated attention there (a library, or the graph runs eagerly).
GPU_ATTENTION_TILES = {
    ("16-bit", False, 64): ((32, 32, 4), (64, 32, 4), (64, 64, 8), (128, 64, 8)),
    ("16-bit", False, 128): ((32, 32, 4), (64, 32, 8), (32, 64, 8)),
    ("16-bit", False, 256): ((16, 32, 4),),
    ("16-bit", True, 64): ((16, 16, 4), (32, 32, 4), (64, 64, 8), (128, 64, 8)),
    ("16-bit", True, 128): ((16, 16, 4), (16, 32, 8), (32, 32, 8)),
    ("fp32", False, 64): ((16, 16, 4), (16, 32, 4)),
    ("fp32", False, 128): ((16, 16, 4), (16, 32, 4), (64, 32, 8)),
    ("fp32", True, 64): ((16, 16, 4),),
    ("fp32", True, 128): ((16, 16, 4),),
}


def plan_attention(shape, profile) -> AttentionTiling:
    """The best (BR, BC, stages) for the attention ``shape`` (``ir.AttentionShape``) on
    ``profile``: the least estimated time — padded matrix work over the programs' waves, with
    K and V re-read once per query block — among tiles within local SRAM (and on a GPU among
    ``GPU_ATTENTION_TILES``); ties go to fewer stages, then larger blocks."""
    name = dtype_name(shape.dtype)
    matrix = name in profile.matrix_shapes  # fp32 stays IEEE (as eager): vector FMAs
    base = tuple(profile.matrix_shapes[name]) if matrix else VECTOR_MATMUL_TILE
    peak = profile.peak_flops(name if matrix else "fp32", matrix=matrix)
    itemsize, bd = shape.dtype.itemsize, max(_pow2_at_least(shape.head_dim), 16)
    if profile.triton_target:
        key = ("fp32" if itemsize == 4 else "16-bit", shape.backward, max(bd, 64))
        blocks = list(GPU_ATTENTION_TILES.get(key, ()))  # Triton picks the instruction for each
    else:
        blocks = [(br, bc, None) for br, bc in itertools.product(_multiples(base[0], MAX_ATTENTION_BLOCK),
                                                                 _multiples(base[1], MAX_ATTENTION_BLOCK))]
    best = None
    for br, bc, warps in blocks:
        for stages in STAGES:
            smem = _attention_bytes(br, bc, bd, itemsize, stages, shape.backward)
            if smem > profile.local_sram_bytes:
                continue
            _, padded, programs, rereads = attention_work(shape, br, bc, bd)
            compute = padded / (peak * parallel_efficiency(programs, profile.compute_units)) / (1 - 0.5 / stages)
            memory = rereads / (profile.llc_gbps * 1e9)
            key = (max(compute, memory), stages, -br * bc, -br, br, bc)
            if best is None or key < best[0]:
                best = (key, AttentionTiling(br, bc, bd, stages, smem, profile.local_sram_bytes,
                                             programs / profile.compute_units, warps))
    if best is None:
        where = "a GPU tile measured without spills (GPU_ATTENTION_TILES) within" if profile.triton_target else "fits"
        raise NotImplementedError(f"no attention tile with a head dim of {shape.head_dim} {where} local SRAM "
                                  f"({_kib(profile.local_sram_bytes)})")
    return best[1]


def _attention_bytes(br: int, bc: int, bd: int, itemsize: int, stages: int, backward: bool) -> int:
    """Local SRAM one attention program holds: forward, its query rows, ``stages`` staged
    key and value blocks, the fp32 accumulator and scores; backward (per key block), its key
    and value rows and their fp32 gradients, ``stages`` staged query, output-gradient and
    output rows, the fp32 scores and their gradients."""
    if backward:
        return (2 * bc * bd + 3 * br * bd * stages) * itemsize + (2 * bc * bd + 2 * br * bc) * 4
    return (br * bd + 2 * bc * bd * stages) * itemsize + (br * bd + br * bc) * 4
def instruction_tile(dtype: torch.dtype, profile) -> tuple:
    """The (m, n, k) every tile dim is a multiple of: the matrix instruction for ``dtype``, or
    the FMA tile without one."""
    name = dtype_name(dtype)
    return tuple(profile.matrix_shapes[name]) if name in profile.matrix_shapes else VECTOR_MATMUL_TILE


def largest_tile(dtype: torch.dtype, profile) -> tuple:
    """The largest (BM, BN, BK) the planner considers for ``dtype``."""
    name = dtype_name(dtype)
    if name not in profile.matrix_shapes:
        return MAX_FMA_TILE
    return MAX_TILE


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


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2 ** 20:.4g} MiB"
