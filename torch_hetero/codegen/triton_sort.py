"""A stable argsort (``ir.Sort``) as Triton: every element's sorted position is its rank, the
number of elements of its row ordered before it (smaller, or equal and earlier: stable; NaNs
after every number, before them when descending, as eager), and the kernel stores each
element's own position at its rank.  The row is compared block against block in
``[XBLOCK, RBLOCK, RBLOCK]`` tiles, so any row length and any key dtype sort alike (64-bit keys
included, which a key packed with its index for ``tl.sort`` could not hold); the work is
quadratic in the row length, which suits the short rows of routing (top-k over experts,
tokens by expert) and costs long rows dearly."""
from __future__ import annotations

import sympy
import torch

from .. import ir, symbolic
from ..planning.loop_nest import node_indices
from .code_handler import Var
from .triton_ops import TritonOps


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


def render_sort(ops: TritonOps, node, outer_vars: list, outer: tuple, acc: str) -> list:
    """The lines of one sort node in a kernel whose programs hold ``XBLOCK`` rows (``xmask``)."""
    data: ir.Sort = node.data
    length = ops.index(data.reduction_ranges[0])
    mine, mine_key = _key(ops, node, outer_vars, outer, list(symbolic.index_symbols("x", 1)), "rindex", "rmask")
    theirs, their_key = _key(ops, node, outer_vars, outer, list(symbolic.index_symbols("xj", 1)), "jindex", "jmask")
    a, b = f"{their_key}[:, None, :]", f"{mine_key}[:, :, None]"
    first = (f"({a} > {b}) | (({a} != {a}) & ({b} == {b}))" if data.descending
             else f"({a} < {b}) | (({b} != {b}) & ({a} == {a}))")
    tie = f"(({a} == {b}) | (({a} != {a}) & ({b} != {b}))) & (jindex[:, None, :] < rindex[:, :, None])"
    rank = sympy.Symbol(f"r{acc}_rank", integer=True, nonnegative=True)
    ops.ranges[rank] = data.reduction_ranges[0]
    index, _ = node_indices(node, outer_vars, outer, [rank])
    saved, ops.masks = ops.masks, ["xmask", "rmask"]
    with ops.scope() as stored:
        ops.store(node.name, node.layout.index(data.full_index(index, [rank])), Var("rindex.to(tl.int64)", torch.int64),
                  node.get_dtype())
    ops.masks = saved
    compare = [f"{acc}_before = ({first}) | ({tie})",
               f"{rank} += tl.reduce(({acc}_before & jmask[:, None, :]).to(tl.int64), 2, _add)"]
    inner = ["jindex = joffset + tl.arange(0, RBLOCK)[None, :]", f"jmask = jindex < {length}"] + theirs + compare
    row = (["rindex = roffset + tl.arange(0, RBLOCK)[None, :]", f"rmask = rindex < {length}"] + mine
           + [f"{rank} = tl.full([XBLOCK, RBLOCK], 0, tl.int64)", f"for joffset in range(0, {length}, RBLOCK):"]
           + ["    " + line for line in inner] + stored)
    return [f"for roffset in range(0, {length}, RBLOCK):"] + ["    " + line for line in row]
