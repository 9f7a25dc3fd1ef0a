"""Library GEMM or generated template: a priced choice.

On a Triton target that declares a BLAS library (h100, h200, a100, mi300x) a matmul may be a
call into that library or our template in the device model's tile (``tiling.plan_matmul``),
and the cost model decides.  The library runs at the fraction of the matrix peak the profile
states for it (``gemm_efficiency``: a vendor GEMM's tiles, split-K and kernels we do not model,
folded into one figure); the template is priced by its tile (tile and wave quantization over
the units, pipelining).  A pointwise node that can become the template's epilogue would
otherwise be a kernel of its own after the library call: its estimate (a launch, the output's
trip through memory) joins the library's side.  Ties go to the library.  Without a library
the template is the only choice; on the host the GEMM is ATen's (no choice is made).

With ``mode="max-autotune"`` on a visible GPU the choice is confirmed by timing
(``runtime/autotune.py``); without one it stands as priced here.

A fused attention is priced the same way where the profile declares an attention library:
the library at its ``attention_efficiency`` of the matrix peak against our flash attention in
its tile (``choose_attention``; not timed by max-autotune yet)."""
from __future__ import annotations

import dataclasses
import itertools
from typing import Optional

from ..device_models.matmul_tiles import STAGES, smallest_dim, staged_bytes
from ..dtypes import FLOAT8
from ..ir import INT8_WEIGHT_MATMUL, QUANTIZED_MATMULS, SCALED_MATMUL
from ..lowering.extern import attention_dropout, generated_attention_problem
from .cost_model import MemoryModel, estimate_attention, estimate_library_attention, estimate_matmul
from .kernel_analysis import extern_traffic
from .tiling import instruction_tile, largest_tile, plan_attention

LIBRARY = ("library",)  # the candidate that calls the profile's BLAS library
UNTIMED = "max-autotune: not timed (no GPU visible), the analytic choice stands"


@dataclasses.dataclass(frozen=True)
class GemmChoice:
    template: bool       # generate the template (else: call the library)
    reason: str          # for the schedule and explain(): the estimates or timings compared


@dataclasses.dataclass(frozen=True)
class Timed:
    """One GEMM shape as max-autotune measured it on the GPU (``runtime/autotune.py``)."""
    tile: object                  # tiling.MatmulTiling of the fastest template candidate
    template_us: float
    library_us: Optional[float]   # None: the profile declares no library
    summary: str                  # the candidates and their times, for the reason


@dataclasses.dataclass(frozen=True)
class Tuning:
    """max-autotune's results for a graph: ``timed``, matmul shape (``ExternCall.matmul_shape``)
    → Timed; ``note``: what the reasons of shapes it did not time say."""
    timed: dict
    note: str = ""


def candidates(tile, dtype, profile) -> list:
    """What max-autotune times for a GEMM whose analytic tile is ``tile``: that tile first,
    the library (where the profile declares one), then its neighbours — BM, BN, BK halved and
    doubled, one stage fewer or more — that ``tl.dot`` takes and local SRAM stages; in a fixed
    order, so the same GEMM on the same profile is timed alike."""
    analytic = (tile.bm, tile.bn, tile.bk, tile.stages)
    out = [("template", *analytic)] + ([LIBRARY] if profile.target.blas else [])
    lowest = [smallest_dim(b) for b in instruction_tile(dtype, profile)]
    for position, factor in itertools.product(range(4), (0.5, 2)):
        changed = list(analytic)
        changed[position] = int(changed[position] * factor) if position < 3 else changed[position] + (
            1 if factor > 1 else -1)
        bm, bn, bk, stages = changed
        fits = staged_bytes(bm, bn, bk, dtype.itemsize, stages) <= profile.local_sram_bytes
        small_or_large = position < 3 and not lowest[position] <= changed[position] <= largest_tile(dtype, profile)[position]
        if small_or_large or stages not in STAGES or not fits:
            continue
        if ("template", *changed) not in out:
            out.append(("template", *changed))
    return out


def libraries(call, profile) -> tuple:
    """The profile's libraries that could run the GEMM ``call`` instead of our template: its
    convolution library for a convolution the lowering made a GEMM (``call.gemm``), BLAS for a
    matmul (an int8 one too), for a scaled (fp8) matmul BLAS only where the matrix units take its
    format, and none for a weight-only int8 one or an int8 one with unsigned activations."""
    if call.op == SCALED_MATMUL:
        return profile.target.blas if call.gemm.dtype in FLOAT8 else ()
    if call.op == INT8_WEIGHT_MATMUL or (call.gemm is not None and call.gemm.column_sums):
        return ()  # BLAS libraries have no int8-weight x float or uint8 x int8 GEMM: our template or nothing
    return profile.target.convolution if call.gemm is not None and call.op not in QUANTIZED_MATMULS \
        else profile.target.blas


def choose(call, tiles, profile, hints: dict, epilogue_us: float = 0.0, prologue_us: float = 0.0) -> GemmChoice:
    """Template or library for the matmul ``call`` (its tile: ``tiles.of(call)``);
    ``epilogue_us``: the estimate of the pointwise kernel the template would take in as its
    epilogue, ``prologue_us``: of the dequantization kernels whose operands it would compute as
    it loads them (0: none).  Timed by max-autotune, the measured times decide; else estimates."""
    timed = tiles.timed(call)
    convolution = call.gemm is not None and call.op not in QUANTIZED_MATMULS
    ours = ("generated as an implicit GEMM in the device model's tile" if convolution else
            "generated in the device model's tile") + (f" ({call.note})" if call.note else "")
    if not libraries(call, profile):
        reason = ours if call.op in (SCALED_MATMUL, INT8_WEIGHT_MATMUL) else \
            f"{ours} (no BLAS library takes uint8 x int8)" if call.gemm is not None and call.gemm.column_sums else \
            f"{ours} (the profile declares no {'convolution' if convolution else 'BLAS'} library)"
        return GemmChoice(True, reason + (f"; {timed.summary}" if timed else _untimed(tiles)))
    names = ", ".join(libraries(call, profile))
    if timed is not None:
        template, library, how = timed.template_us, timed.library_us, "timed"
    else:
        shape = call.matmul_shape(hints)
        reads, writes = extern_traffic(call, hints)
        library = estimate_matmul(*shape, reads, writes, profile, MemoryModel(profile)).time_us
        template = estimate_matmul(*shape, reads, writes, profile, MemoryModel(profile),
                                   tiles.of(call).seconds).time_us
        how = "est."
    theirs = f"{names} {library:.3g} us" + (
        f" + its dequantization kernel {prologue_us:.3g} us (est.)" if prologue_us else "") + (
        f" + its epilogue kernel {epilogue_us:.3g} us (est.)" if epilogue_us else "")
    after = f"; {timed.summary}" if timed else _untimed(tiles)
    if template < library + prologue_us + epilogue_us:
        return GemmChoice(True, f"{ours}: {how} {template:.3g} us vs {theirs}{after}")
    return GemmChoice(False, f"library call: {names}, declared by the profile; {how} {theirs} vs the template's "
                             f"{template:.3g} us{after}")


def _untimed(tiles) -> str:
    """The note for a shape max-autotune did not time ("" when it was not asked for)."""
    return f"; {tiles.tuning.note}" if tiles.tuning is not None and tiles.tuning.note else ""


def choose_attention(call, profile, hints: dict) -> Optional[GemmChoice]:
    """Our flash attention or the profile's attention library for the fused attention ``call``,
    priced; None where nothing is priced: the target generates no such kernel, or ours cannot
    compute the call (a dtype, dropout, a head dim no tile holds) — the library's."""
    shape = call.attention_shape(hints)
    if not profile.target.matmul_epilogue or generated_attention_problem(
            shape.dtype, attention_dropout(call.args, shape.backward), shape.head_dim):
        return None
    try:
        tile = plan_attention(shape, profile)
    except NotImplementedError:
        return None
    reads, writes = extern_traffic(call, hints)
    ours = estimate_attention(shape, tile, reads, writes, profile, MemoryModel(profile)).time_us
    theirs = estimate_library_attention(shape, reads, writes, profile, MemoryModel(profile)).time_us
    names = ", ".join(profile.target.attention)
    if ours < theirs:
        return GemmChoice(True, f"generated as flash attention in the device model's tile: est. {ours:.3g} us vs "
                                f"{names} {theirs:.3g} us")
    return GemmChoice(False, f"library call: {names}, declared by the profile; est. {names} {theirs:.3g} us vs the "
                             f"generated flash attention's {ours:.3g} us")
