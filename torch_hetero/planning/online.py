"""The one-pass patterns of a looped row, found from a kernel's nodes: a softmax's max and
sum of exp, and a norm's mean and variance.

A looped softmax reads its row three times: for the max, for the sum of exp(x - max), to
normalize.  When a max reduction is followed, in the same kernel, by a sum reduction whose
element is ``exp(t - max)`` with ``t`` the very value the max reduces, a target with the
``online_softmax`` capability computes both in one pass (a running max, and a running sum
rescaled by exp(old max - new max) whenever the max grows), so the row is read twice.

A looped layer norm reads its row three times too: for the mean, for the sum of squared
deviations (t - mean)², to normalize.  When a sum of ``t`` divided by the row length (the
mean) is followed by a sum of ``(t - mean)²``, a target with ``online_norm`` computes both in
one pass: the plain running sum, for the mean as the pass computes it, and Welford's running
mean and sum of squared deviations (merged across lanes by Chan's formula) for the second
sum.  Welford, not a sum of squares minus n·mean²: that difference cancels catastrophically
when the mean is large against the spread; Welford's error stays within a few ulps of the
variance times the row length, as the two passes'.

Each match is structural: the inner functions run under ``TracingOps``, which returns each
value as the tree of ops that made it, and the trees are compared."""
from __future__ import annotations

from typing import NamedTuple, Optional

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


class OnlinePair(NamedTuple):
    first: str    # the max (softmax) or the mean (norm): the reduction whose pass does both
    second: str   # the sum of exp(t - max), or of (t - mean)²: computed in the first's pass
    kind: str     # "max+sum" | "mean+variance"


# each kind and the ``Target`` capability that renders it
CAPABILITY = {"max+sum": "online_softmax", "mean+variance": "online_norm"}


def online_pair(group: Group) -> Optional[OnlinePair]:
    """The first adjacent max → sum of exp(t - max), or mean → sum of (t - mean)², in
    ``group`` over the same row, or None.  The max has no epilogue (the sum reads it raw)."""
    nodes = group.nodes
    for first, second in zip(nodes, nodes[1:]):
        kind = _matches(first, second, group)
        if kind:
            return OnlinePair(first.name, second.name, kind)
    return None


def _matches(first, second, group: Group) -> str:
    """The kind of pair ``first`` and ``second`` make ("" if none)."""
    kinds = [getattr(n.data, "reduction_type", None) if type(n.data) is ir.Reduction else None
             for n in (first, second)]
    if kinds not in (["max", "sum"], ["sum", "sum"]) or group.column:
        return ""
    inner = inner_ranges(first, group.outer)
    if not inner or inner != inner_ranges(second, group.outer):
        return ""
    outer_vars = list(symbolic.index_symbols("i", len(group.outer)))
    inner_vars = list(symbolic.index_symbols("x", len(inner)))
    index, rindex = node_indices(first, outer_vars, group.outer, inner_vars)
    second_index, second_rindex = node_indices(second, outer_vars, group.outer, inner_vars)
    if list(rindex) != list(second_rindex):
        return ""
    value = trace(first, index, rindex)  # a keepdim max has a size-1 dim the sum lacks: compare addresses
    first_value = ("load", first.name, first.layout.index(index), first.get_dtype())
    summed = trace(second, second_index, second_rindex)
    if first.name in _loaded(value):
        return ""
    if kinds == ["max", "sum"]:
        return "max+sum" if first.data.epilogue is None and summed == ("exp", ("sub", value, first_value)) else ""
    deviation = ("sub", value, first_value)
    return "mean+variance" if _is_mean(first, inner) and summed == ("mul", deviation, deviation) else ""


def _is_mean(node, inner) -> bool:
    """Is ``node`` a sum divided by its row's length (its epilogue, traced)?"""
    if node.data.epilogue is None:
        return False
    with set_ops_handler(TracingOps()):
        tree = node.data.epilogue(("total",))
    return (len(tree) == 3 and tree[:2] == ("truediv", ("total",)) and tree[2][0] == "index_expr"
            and sympy.simplify(tree[2][1] - symbolic.product(inner)) == 0)


def _loaded(tree) -> set:
    """The buffers a traced value loads."""
    if not isinstance(tree, tuple) or not tree:
        return set()
    own = {tree[1]} if tree[0] == "load" else set()
    return own.union(*(_loaded(arg) for arg in tree[1:]))
