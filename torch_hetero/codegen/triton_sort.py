"""A stable argsort (``ir.Sort``) as Triton, two ways, as the plan's tiling says
(``tiling.plan_kernel``):

* **bitonic** — a row that fits one block (``RBLOCK``): the (key, position) pairs of the
  programs' rows sort in one bitonic network (``_bitonic_argsort`` below: Triton's ``tl.sort``
  hypercube, exchanging pairs, ordered by ``_sort_before``), and each sorted position is stored;
* **pairwise ranks** — any row length: every element's sorted position is its rank, the number
  of elements of its row ordered before it, counted block against block in
  ``[XBLOCK, RBLOCK, RBLOCK]`` comparisons, and the kernel stores each element's position at its
  rank; quadratic in the row length.

Both order by ``_sort_before``: keys, NaNs after every number (before them when descending),
equal keys by position (stable), as eager; any key dtype (64-bit keys included, which a key
packed with its index for ``tl.sort`` could not hold)."""
from __future__ import annotations

import sympy
import torch

from .. import ir, symbolic
from ..planning.loop_nest import node_indices
from .code_handler import Var
from .triton_ops import TritonOps

PRELUDE = '''

@triton.jit
def _xor(a, b):
    return a ^ b


@triton.jit
def _sort_before(ak, ai, bk, bi, n, DESCENDING: tl.constexpr):
    """(ak, ai) sorts before (bk, bi): keys, NaNs after numbers (first when descending), equal
    keys by position; positions past the row (>= n, a block's padding) after the row, by position."""
    if DESCENDING:
        first = (ak > bk) | ((ak != ak) & (bk == bk))
    else:
        first = (ak < bk) | ((bk != bk) & (ak == ak))
    tie = (ak == bk) | ((ak != ak) & (bk != bk))
    a_in = ai < n
    return (a_in & (bi >= n)) | ((a_in == (bi < n)) & tl.where(a_in, first | (tie & (ai < bi)), ai < bi))


@triton.jit
def _exchange(k, i, n, flip, AXIS: tl.constexpr, DIMS: tl.constexpr, KEY_BITS: tl.constexpr,
              DESCENDING: tl.constexpr):
    """One compare-exchange of a bitonic network along hypercube axis AXIS (from the innermost)."""
    bits = k.to(KEY_BITS, bitcast=True)
    other_k = (bits ^ tl.reduce(bits, DIMS - 1 - AXIS, _xor, keep_dims=True)).to(k.dtype, bitcast=True)
    other_i = i ^ tl.reduce(i, DIMS - 1 - AXIS, _xor, keep_dims=True)
    right = tl.reshape(tl.arange(0, 2), [1] * (DIMS - AXIS - 1) + [2] + [1] * AXIS)
    take = _sort_before(other_k, other_i, k, i, n, DESCENDING) != (flip ^ right).to(tl.int1)
    return tl.where(take, other_k, k), tl.where(take, other_i, i)


@triton.jit
def _bitonic_argsort(k, i, n, DIMS: tl.constexpr, LOG_R: tl.constexpr, KEY_BITS: tl.constexpr,
                     DESCENDING: tl.constexpr):
    """The positions ``i`` of each row of ``k`` ([XBLOCK, RBLOCK] = 2**DIMS elements, rows of
    2**LOG_R) in sorted order (``_sort_before``)."""
    hk = tl.reshape(k, [2] * DIMS)
    hi = tl.reshape(i, [2] * DIMS)
    for stage in tl.static_range(1, LOG_R + 1):
        if stage < LOG_R:
            flip = tl.reshape(tl.arange(0, 2), [1] * (DIMS - stage - 1) + [2] + [1] * stage)
        else:
            flip = tl.full([1] * DIMS, 0, tl.int32)
        for step in tl.static_range(stage):
            hk, hi = _exchange(hk, hi, n, flip, stage - 1 - step, DIMS, KEY_BITS, DESCENDING)
    return tl.reshape(hi, i.shape)
'''

_KEY_BITS = {torch.float32: "tl.int32", torch.float64: "tl.int64", torch.int64: "tl.int64", torch.int32: "tl.int32",
             torch.int16: "tl.int16", torch.int8: "tl.int8", torch.uint8: "tl.uint8"}


def _key(ops: TritonOps, node, outer_vars, outer, variables, flat: str, mask: str) -> tuple:
    """(lines, key) of the row positions ``flat`` under ``mask``: the node's value computation,
    in a type Triton compares (bools as int32)."""
    data: ir.Sort = node.data
    length = data.reduction_ranges[0]
    ops.ranges.update(zip(variables, [length]))
    index, rindex = node_indices(node, outer_vars, outer, variables)
    lines = [f"{variables[0]} = {flat}"]
    saved, ops.masks = ops.masks, ["xmask", mask]
    with ops.scope() as computed:
        value = data.inner_fn(index, rindex)
        if value.dtype == torch.bool:
            value = ops._emit(f"{value}.to(tl.int32)", torch.int32)
    ops.masks = saved
    return lines + computed, value


def _store_at(ops: TritonOps, node, outer_vars, outer, position, value: str) -> list:
    """The store of ``value`` at sorted position ``position`` (a symbol) of each row."""
    data: ir.Sort = node.data
    ops.ranges[position] = data.reduction_ranges[0]
    index, _ = node_indices(node, outer_vars, outer, [position])
    saved, ops.masks = ops.masks, ["xmask", "rmask"]
    with ops.scope() as stored:
        ops.store(node.name, node.layout.index(data.full_index(index, [position])), Var(value, torch.int64),
                  node.get_dtype())
    ops.masks = saved
    return stored


def render_sort(ops: TritonOps, node, outer_vars: list, outer: tuple, acc: str, tiling) -> list:
    """The lines of one sort node in a kernel whose programs hold ``XBLOCK`` rows (``xmask``)."""
    data: ir.Sort = node.data
    length = ops.index(data.reduction_ranges[0])
    descending = bool(data.descending)
    mine, mine_key = _key(ops, node, outer_vars, outer, list(symbolic.index_symbols("x", 1)), "rindex", "rmask")
    head = ["rindex = tl.arange(0, RBLOCK)[None, :]", f"rmask = rindex < {length}"] + mine
    if tiling.strategy == "bitonic":
        position = sympy.Symbol("rindex", integer=True, nonnegative=True)
        log_r, dims = tiling.rblock.bit_length() - 1, (tiling.xblock * tiling.rblock).bit_length() - 1
        order = [f"{acc}_order = _bitonic_argsort(tl.broadcast_to({mine_key}, (XBLOCK, RBLOCK)), "
                 f"tl.broadcast_to(rindex, (XBLOCK, RBLOCK)), {length}, {dims}, "
                 f"{log_r}, {_KEY_BITS[mine_key.dtype]}, {descending})"]
        return head + order + _store_at(ops, node, outer_vars, outer, position, f"{acc}_order.to(tl.int64)")
    theirs, their_key = _key(ops, node, outer_vars, outer, list(symbolic.index_symbols("xj", 1)), "jindex", "jmask")
    rank = sympy.Symbol(f"r{acc}_rank", integer=True, nonnegative=True)
    compare = [f"{acc}_before = _sort_before({their_key}[:, None, :], jindex[:, None, :], {mine_key}[:, :, None], "
               f"rindex[:, :, None], {length}, {descending})",
               f"{rank} += tl.reduce(({acc}_before & jmask[:, None, :]).to(tl.int64), 2, _add)"]
    inner = ["jindex = joffset + tl.arange(0, RBLOCK)[None, :]", f"jmask = jindex < {length}"] + theirs + compare
    row = (["rindex = roffset + tl.arange(0, RBLOCK)[None, :]", f"rmask = rindex < {length}"] + mine
           + [f"{rank} = tl.full([XBLOCK, RBLOCK], 0, tl.int64)", f"for joffset in range(0, {length}, RBLOCK):"]
           + ["    " + line for line in inner]
           + _store_at(ops, node, outer_vars, outer, rank, "rindex.to(tl.int64)"))
    return [f"for roffset in range(0, {length}, RBLOCK):"] + ["    " + line for line in row]
