"""Estimated time of each kernel and extern call on a device profile.

A roofline per kernel — max(FLOPs / peak, bytes / bandwidth) + launch overhead — refined by:

* levels of memory: a buffer the graph touched recently enough to still fit on chip (by LRU
  reuse distance) is re-read at that level's bandwidth — the host's private caches, the
  last-level SRAM — and the rest comes from off-chip memory (what makes MTIA's 256 MB SRAM
  matter); a load striding along the innermost loop pays a cache line per element;
* parallel utilization and wave quantization: ``chunks`` of work over ``compute_units``
  reach ``chunks / (ceil(chunks / units) * units)`` of peak, and a serial kernel one unit's;
* matrix-unit padding: a matmul's M, N, K are rounded up to the instruction shape;
* a generated flash attention (``attention_work``): its matrix work padded to its tile,
  q, k, v and the output moved once each, and K and V re-read once per query block;
* a Triton sort's comparisons (``sort_flops``): its bitonic network's, or every pair's in blocks
  (``tiling._plan_sort``);
* on the host C++ target, the ops ``host_ops`` names (transcendentals, a division g++ does not
  hoist, select, and every other op as plain arithmetic, ``arith``: not at the sgemm FLOP/s,
  least of all in a scalar loop) cost what the host measured per
  element in a vectorized or scalar loop
  (``DeviceProfile.vector_op_ns`` / ``scalar_op_ns``, from ``calibrate``; a transcendental on an
  argument a mask may have made infinite at ``vector_inf_op_ns``), and arg/any/all
  reductions a serial chain (``serial_combine``).

The cost model's job is to rank choices and estimate whole graphs; its error against real
timings is measured by ``benchmarks/cost_model_accuracy.py``."""
from __future__ import annotations

import collections
import dataclasses
import math

import torch

from ..device_models import special_functions
from ..dtypes import FLOAT8
from .kernel_analysis import DIVMOD_INDEX, KernelCost
from .online import CAPABILITY

_DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32",
                torch.float64: "fp64", torch.int8: "int8", **dict.fromkeys(FLOAT8, "fp8")}


@dataclasses.dataclass(frozen=True)
class Estimate:
    time_us: float
    compute_us: float
    memory_us: float
    launch_us: float
    flops: float
    bytes: float

    @property
    def bound(self) -> str:
        """What limits the kernel: the largest of compute, memory and launch time."""
        parts = {"compute": self.compute_us, "memory": self.memory_us, "launch": self.launch_us}
        return max(parts, key=parts.get)


def dtype_name(dtype: torch.dtype) -> str:
    return _DTYPE_NAMES.get(dtype, "fp32")


def parallel_efficiency(chunks: int, units: int) -> float:
    """Fraction of the device's units kept busy by ``chunks`` equal pieces of work."""
    chunks = max(int(chunks), 1)
    waves = math.ceil(chunks / units)
    return chunks / (waves * units)


class MemoryModel:
    """Where each graph buffer is read from, by reuse distance: an LRU stack of the buffers the
    graph touched; a buffer whose distance (bytes touched since its last use, itself included)
    fits a level of on-chip memory is read at that level's bandwidth, otherwise from DRAM.

    Levels: where local SRAM is a cache (``Target.cached_local_memory``: the host's private
    caches, hardware-managed, so they keep data between kernels), it and the last-level cache;
    elsewhere only the last-level SRAM (local SRAM is per-kernel scratch).  Graph inputs start resident, most recent
    last: the steady state of a model called in a loop."""

    def __init__(self, profile, inputs: dict | None = None):
        self.profile = profile
        self.levels = [(profile.llc_bytes, profile.llc_gbps)]
        if profile.target.cached_local_memory:
            units = profile.compute_units
            self.levels.insert(0, (units * profile.local_sram_bytes, units * profile.local_sram_gbps))
        self.resident: collections.OrderedDict = collections.OrderedDict()
        self.shared: set = set()  # written outside our kernels: not in the cores' private caches
        for name, nbytes in (inputs or {}).items():
            self._touch(name, nbytes)
            self.shared.add(name)

    def seconds(self, reads: dict, writes: dict, efficiency: float, strided: dict | None = None,
                ours: bool = True) -> float:
        """Time to move ``reads``/``writes`` (name → bytes) and ``strided`` (name → elements,
        one line each) with ``efficiency`` of the units active.  ``ours``: a generated kernel,
        whose work split matches the next kernel's; an ATen call (False) leaves what it writes
        in other cores' caches, so it is re-read no faster than from the last level."""
        total = 0.0
        for name, elements in (strided or {}).items():
            total += elements * STRIDED_ACCESS_BYTES / self._strided_gbps(name) / 1e9
        for name, nbytes in reads.items():
            if name not in (strided or {}):
                total += nbytes / self._gbps(self._distance(name), name in self.shared) / 1e9
            self._touch(name, nbytes)
        for name, nbytes in writes.items():
            total += nbytes / self._gbps(nbytes, not ours) / 1e9
            self._touch(name, nbytes)
            if ours:
                self.shared.discard(name)
            else:
                self.shared.add(name)
        return total / max(efficiency, 1.0 / self.profile.compute_units)

    def _distance(self, name: str) -> float:
        """Bytes touched since ``name`` was last used, its own included (inf: not resident)."""
        if name not in self.resident:
            return math.inf
        distance = 0.0
        for other in reversed(self.resident):
            distance += self.resident[other]
            if other == name:
                return distance
        return math.inf

    def _gbps(self, footprint: float, shared: bool = False) -> float:
        levels = self.levels[1:] if shared and len(self.levels) > 1 else self.levels
        return next((gbps for capacity, gbps in levels if footprint <= capacity), self.profile.dram_gbps)

    def _strided_gbps(self, name: str) -> float:
        """A strided walk keeps its lines only if the whole buffer fits one unit's local memory;
        otherwise (power-of-two strides alias onto few cache sets) each line comes from DRAM."""
        nbytes = self.resident.get(name, math.inf)
        fits = nbytes <= self.profile.local_sram_bytes and self._distance(name) <= self.levels[0][0]
        return self.levels[0][1] if fits else self.profile.dram_gbps

    def _touch(self, name: str, nbytes: float) -> None:
        self.resident.pop(name, None)
        self.resident[name] = nbytes
        while sum(self.resident.values()) > self.profile.llc_bytes and len(self.resident) > 1:
            self.resident.popitem(last=False)
        if nbytes > self.profile.llc_bytes:
            self.resident.pop(name)


# Bytes one strided access moves: a CPU cache line (a GPU moves two 32-byte sectors at best).
STRIDED_ACCESS_BYTES = 64

# Elements of a pointwise kernel one block (Triton program) handles on GPU-style targets.
POINTWISE_BLOCK = 1024


def work_chunks(cost: KernelCost, profile) -> int:
    """Independent pieces of work the target spreads over its units: the host C++ code's
    OpenMP iterations, or blocks (one per output row of a reduction) on Triton targets."""
    if profile.target.host_threads:
        return cost.parallel_chunks
    return max(1, int(cost.outputs if cost.reduction else math.ceil(cost.outputs / POINTWISE_BLOCK)))


def row_fits(cost: KernelCost, profile) -> bool:
    """One-pass or looped: does one outer iteration's working set fit a unit's local SRAM?
    If not, every pass over a row reads it again from the next level."""
    return cost.row_bytes <= profile.local_sram_bytes


def online(cost: KernelCost, profile) -> bool:
    """Does the target compute the kernel's max and sum of exp (mean and variance) in one
    pass over a row?  Only a looped row gains (a one-pass row is re-read from local SRAM anyway)."""
    return (cost.online is not None and getattr(profile.target, CAPABILITY[cost.online.kind])
            and not row_fits(cost, profile))


def reread_bytes(cost: KernelCost, profile, name: str) -> float:
    """Bytes of ``name`` a looped kernel's later passes read again (one pass fewer online)."""
    saved = cost.online_saved.get(name, 0.0) if online(cost, profile) else 0.0
    return max(cost.reread.get(name, 0.0) - saved, 0.0)


def estimate_kernel(cost: KernelCost, profile, memory: MemoryModel, dtype: torch.dtype) -> Estimate:
    """A generated (pointwise / reduction) kernel: vector units, parallel over its work chunks."""
    chunks = work_chunks(cost, profile)
    efficiency = parallel_efficiency(chunks, profile.compute_units)
    if chunks == 1:
        efficiency = 1.0 / profile.compute_units
    peak = profile.peak_flops(dtype_name(dtype), matrix=False) * efficiency
    compute = cost.flops / peak
    if profile.target.host_threads:  # every op priced as measured (plain arithmetic as host_ops.ARITH)
        core_seconds = sum(count * op_seconds(profile, op, kind) for (op, kind), count in cost.calls.items())
        core_seconds += cost.serial_combines * op_seconds(profile, "serial_combine", "scalar")
        compute = core_seconds / (profile.compute_units * efficiency)
    reads = cost.reads if row_fits(cost, profile) else {
        name: nbytes + reread_bytes(cost, profile, name) for name, nbytes in cost.reads.items()}
    mem = memory.seconds(reads, cost.writes, efficiency, cost.strided)
    # a serial host kernel is only a call; a parallel one (launch_overhead_us) forks and joins
    launch = profile.launch_overhead_us if chunks > 1 or not profile.target.host_threads else profile.host_call_us
    return _estimate(compute, mem, launch, cost.flops, cost.bytes)


SORT_COMPARE_FLOPS = 8  # one (key, position) comparison and its selects (``triton_sort._sort_before``)


def sort_flops(cost: KernelCost, tiling) -> float:
    """What a Triton sort computes beyond reading its rows: a bitonic network over a block of
    ``RBLOCK`` makes log2(R)(log2(R)+1)/2 compare-exchanges per element; pairwise ranks compare
    every position with every position of its row, padded to whole blocks."""
    if tiling.strategy == "bitonic":
        steps = math.log2(tiling.rblock) * (math.log2(tiling.rblock) + 1) / 2
        return cost.rows * tiling.rblock * steps * SORT_COMPARE_FLOPS
    if tiling.strategy == "pairwise ranks":
        padded = math.ceil(cost.row_elements / tiling.rblock) * tiling.rblock
        return cost.rows * padded * padded * SORT_COMPARE_FLOPS
    return 0.0


# Per-element costs no calibration measures, in core cycles: a load indexed by a div/mod of
# the loop variable (scalar integer arithmetic), and a special function (``device_models.special_functions``:
# Bessel, gamma family, polynomials: series or rational approximations of several
# transcendentals).  Assumed.
ASSUMED_CYCLES = {DIVMOD_INDEX: 2, **dict.fromkeys(special_functions.CPP, 100)}


def op_seconds(profile, op: str, kind: str) -> float:
    """One core's time per element of a priced op (``host_ops``) in a ``kind`` ("vector",
    "scalar", or "vector_inf": vectorized on a maybe-infinite argument) loop: measured on the
    host, assumed for the few ``ASSUMED_CYCLES`` ops."""
    table = {"vector": profile.vector_op_ns, "scalar": profile.scalar_op_ns,
             "vector_inf": profile.vector_inf_op_ns}[kind]
    if op in table:
        return table[op] * 1e-9
    return ASSUMED_CYCLES[op] / (profile.clock_ghz * 1e9)


PARTIAL_BYTES = 4   # a split GEMM's partial sums are fp32
SPLIT_K_US = 1.0    # assumed: a split GEMM's fixed extra cost (partials and counters allocated, the handshake)


def split_k_seconds(partial_bytes: float, profile) -> float:
    """What splitting K adds to a GEMM: its fp32 partials written and read back through the
    last-level SRAM, and ``SPLIT_K_US``."""
    return SPLIT_K_US * 1e-6 + 2 * partial_bytes / (profile.llc_gbps * 1e9)


def estimate_matmul(batch: int, m: int, n: int, k: int, dtype: torch.dtype, reads: dict, writes: dict,
                    profile, memory: MemoryModel, tile_seconds: float | None = None) -> Estimate:
    """A matmul on the matrix units.  Our template (``tile_seconds``: its tile's time,
    ``tiling.plan_matmul``: tile and wave quantization, pipelining) or a library call: padding to
    the instruction shape, waves of instruction tiles, at the fraction of the peak the profile
    says its library reaches (``gemm_efficiency``; the host's ATen GEMM: its peak)."""
    flops = 2.0 * batch * m * n * k
    mem = memory.seconds(reads, writes, 1.0, ours=False)
    if tile_seconds is not None:
        return _estimate(tile_seconds, mem, extern_launch_us(profile), flops,
                         sum(reads.values()) + sum(writes.values()))
    name = dtype_name(dtype)
    shape = profile.matrix_shapes.get(name)
    if shape:
        tm, tn, tk = shape
        padded = batch * _round_up(m, tm) * _round_up(n, tn) * _round_up(k, tk) * 2.0
        tiles = batch * math.ceil(m / tm) * math.ceil(n / tn)
    else:
        padded, tiles = flops, batch * max(m // 16, 1) * max(n // 16, 1)
    efficiency = parallel_efficiency(tiles, profile.compute_units) * (profile.gemm_efficiency or 1.0)
    compute = padded / (profile.peak_flops(name, matrix=True) * efficiency)
    return _estimate(compute, mem, extern_launch_us(profile), flops, sum(reads.values()) + sum(writes.values()))


def attention_work(shape, br: int, bc: int, bd: int) -> tuple:
    """(FLOPs, FLOPs padded to the tile, programs, bytes of K and V re-read) of a flash
    attention over ``shape`` (``ir.AttentionShape``) in (BR, BC) blocks of a BD head block:
    forward 2 matmuls per block pair (scores, P @ V), backward 7 (scores and dP recomputed
    per key block with dV and dK, and per query block with dQ); causal does about half."""
    matmuls = 7 if shape.backward else 2
    causal = 0.5 if shape.causal and shape.queries > 1 else 1.0
    heads = shape.batch * shape.heads
    programs = heads * math.ceil(shape.queries / br)
    flops = 2.0 * matmuls * heads * shape.queries * shape.keys * shape.head_dim * causal
    padded = 2.0 * matmuls * programs * br * max(math.ceil(shape.keys / bc), 1) * bc * bd * causal
    rereads = programs * shape.keys * 2 * bd * shape.dtype.itemsize * causal
    return flops, padded, programs, rereads


def estimate_attention(shape, tile, reads: dict, writes: dict, profile, memory: "MemoryModel") -> Estimate:
    """A generated flash attention (``tiling.AttentionTiling``): the padded matrix work over
    the programs' waves, its operands and outputs once each plus K and V re-read per query
    block from the last level, never an [L, S] score matrix."""
    name = dtype_name(shape.dtype)
    matrix = name in profile.matrix_shapes
    flops, padded, programs, rereads = attention_work(shape, tile.br, tile.bc, tile.bd)
    efficiency = parallel_efficiency(programs, profile.compute_units)
    compute = padded / (profile.peak_flops(name if matrix else "fp32", matrix=matrix) * efficiency)
    mem = memory.seconds(reads, writes, efficiency) + rereads / (profile.llc_gbps * 1e9)
    moved = sum(reads.values()) + sum(writes.values())
    return _estimate(compute, mem, profile.launch_overhead_us, flops, moved + rereads)


def estimate_library_attention(shape, reads: dict, writes: dict, profile, memory: "MemoryModel") -> Estimate:
    """An attention library's fused attention (FlashAttention, CK): its matrix work at the
    fraction of the matrix peak the profile states for it (``attention_efficiency``), its
    operands and outputs moved once."""
    name = dtype_name(shape.dtype)
    matrix = name in profile.matrix_shapes
    flops = attention_work(shape, 1, 1, shape.head_dim)[0]
    compute = flops / (profile.peak_flops(name if matrix else "fp32", matrix=matrix) * profile.attention_efficiency)
    mem = memory.seconds(reads, writes, 1.0, ours=False)
    return _estimate(compute, mem, extern_launch_us(profile), flops, sum(reads.values()) + sum(writes.values()))


def extern_launch_us(profile) -> float:
    """An extern call's fixed cost: on the host, an ATen call from the wrapper (measured)."""
    return profile.extern_call_us if profile.target.host_threads else profile.launch_overhead_us


def estimate_memory_op(reads: dict, writes: dict, flops: float, profile, memory: MemoryModel) -> Estimate:
    """An op we know only by its operands (fallbacks): memory-bound at full parallelism."""
    mem = memory.seconds(reads, writes, 1.0, ours=False)
    compute = flops / profile.peak_flops("fp32", matrix=False)
    return _estimate(compute, mem, extern_launch_us(profile), flops, sum(reads.values()) + sum(writes.values()))


def _estimate(compute_s: float, memory_s: float, launch: float, flops: float, nbytes: float) -> Estimate:
    compute_us, memory_us = compute_s * 1e6, memory_s * 1e6
    return Estimate(max(compute_us, memory_us) + launch, compute_us, memory_us, launch, flops, nbytes)


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple
