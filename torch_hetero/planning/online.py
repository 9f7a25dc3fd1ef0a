"""The online max+sum pattern of a softmax (or log-softmax) row, found from a kernel's nodes.

A looped softmax reads its row three times: for the max, for the sum of exp(x - max), to
normalize.  When a max reduction is followed, in the same kernel, by a sum reduction whose
element is ``exp(t - max)`` with ``t`` the very value the max reduces, a target with the
``online_softmax`` capability computes both in one pass (a running max, and a running sum
rescaled by exp(old max - new max) whenever the max grows), so the row is read twice.  The
match is structural: both inner functions run under ``TracingOps``, which returns each value
as the tree of ops that made it, and the trees are compared."""
from __future__ import annotations

from typing import Optional

import sympy

from .. import ir, symbolic
from ..ops_protocol import OPS, OpsHandler
from ..virtualized import set_ops_handler
from .loop_nest import Group, inner_ranges, node_indices


class TracingOps(OpsHandler):
    """Every op returns ``(op name, *arguments)``: two values are the same computation
    exactly when their trees are equal.  A masked body is traced in place; an indirect index
    is a fresh symbol (numbered in call order, so traces of one function agree)."""
    GENERATED = {"_op": tuple(sorted(set(OPS) - {"masked", "indirect_indexing", "store"}))}

    def __init__(self):
        self.indirect = 0

    def _op(self, name, *args):
        return (name, *args)

    def masked(self, mask, body, other, dtype):
        return ("masked", mask, body(), other, dtype)

    def indirect_indexing(self, value, size):
        self.indirect += 1
        return sympy.Symbol(f"indirect{self.indirect}", integer=True)

    def store(self, name, index, value, dtype, mode=None):
        return None


def trace(node, index, rindex):
    """The tree of ``node``'s reduced element at (``index``, ``rindex``)."""
    with set_ops_handler(TracingOps()):
        return node.data.inner_fn(index, rindex)


def online_pair(group: Group) -> Optional[tuple]:
    """(max node name, sum node name) of the first adjacent max → sum of exp(t - max) in
    ``group`` over the same row, or None.  The max has no epilogue (the sum reads it raw)."""
    nodes = group.nodes
    for first, second in zip(nodes, nodes[1:]):
        if _matches(first, second, group):
            return first.name, second.name
    return None


def _matches(first, second, group: Group) -> bool:
    kinds = [getattr(n.data, "reduction_type", None) if type(n.data) is ir.Reduction else None
             for n in (first, second)]
    if kinds != ["max", "sum"] or first.data.epilogue is not None or group.column:
        return False
    inner = inner_ranges(first, group.outer)
    if not inner or inner != inner_ranges(second, group.outer):
        return False
    outer_vars = list(symbolic.index_symbols("i", len(group.outer)))
    inner_vars = list(symbolic.index_symbols("x", len(inner)))
    index, rindex = node_indices(first, outer_vars, group.outer, inner_vars)
    second_index, second_rindex = node_indices(second, outer_vars, group.outer, inner_vars)
    if list(rindex) != list(second_rindex):
        return False
    value = trace(first, index, rindex)  # a keepdim max has a size-1 dim the sum lacks: compare addresses
    row_max = ("load", first.name, first.layout.index(index), first.get_dtype())
    summed = trace(second, second_index, second_rindex)
    return summed == ("exp", ("sub", value, row_max)) and first.name not in _loaded(value)


def _loaded(tree) -> set:
    """The buffers a traced value loads."""
    if not isinstance(tree, tuple) or not tree:
        return set()
    own = {tree[1]} if tree[0] == "load" else set()
    return own.union(*(_loaded(arg) for arg in tree[1:]))
