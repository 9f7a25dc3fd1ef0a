"""How the nodes of one kernel map onto its loops.

A kernel is a group of nodes sharing one outer loop nest (``outer`` ranges, run in
parallel); inside it each node runs its own inner loop: a reduction over its reduction
ranges, a pointwise node over its trailing dims.  Codegen, the cost analysis and fusion all
index nodes the same way through this module."""
from __future__ import annotations

import dataclasses
from typing import Optional

import sympy

from . import ir, symbolic

PARALLEL_MIN_ELEMENTS = 32768   # below this, OpenMP fork/join costs more than it saves
MAX_PARALLEL_DIMS = 3           # outer loops collapsed into the parallel one


@dataclasses.dataclass
class Group:
    nodes: list                 # ComputedBuffers, in execution order
    outer: tuple                # ranges of the shared outer loops
    local: set = dataclasses.field(default_factory=set)       # reductions kept in registers
    reread: set = dataclasses.field(default_factory=set)      # stored reductions later nodes also read
    decisions: list = dataclasses.field(default_factory=list)  # why each node joined or not
    matmul: object = None       # the ExternCall matmul this group is the epilogue of, if fused
    column: bool = False        # one column reduction (host): reduction loop outside, outputs vectorized

    @property
    def names(self) -> list:
        return [n.name for n in self.nodes]

    @property
    def stored(self) -> list:
        """The nodes whose results are written to memory."""
        return [n for n in self.nodes if n.name not in self.local]

    def iterations(self) -> sympy.Expr:
        """Inner-loop iterations of all nodes together."""
        return sum((symbolic.product(self.outer + inner_ranges(n, self.outer)) for n in self.nodes),
                   sympy.Integer(0))

    def parallel_iterations(self) -> sympy.Expr:
        """Iterations of the parallel (collapsed outer) loop; 1 when the kernel runs serially
        (small, or a scatter: on the host its writes stay in order, deterministic)."""
        total = self.iterations()
        scatter = any(isinstance(n.data, ir.Scatter) for n in self.nodes)
        if not self.outer or scatter or (total.is_number and int(total) < PARALLEL_MIN_ELEMENTS):
            return sympy.Integer(1)
        return symbolic.product(self.outer[:MAX_PARALLEL_DIMS])


def single(node: ir.ComputedBuffer) -> Group:
    return Group([node], default_outer(node))


def dims(ranges) -> tuple:
    return tuple(r for r in ranges if r != 1)


def default_outer(node: ir.ComputedBuffer) -> tuple:
    """A node on its own: a reduction's output dims; a pointwise node's all but its last
    (vectorized) dim, or its only dim."""
    own = dims(node.data.ranges)
    return own if isinstance(node.data, ir.Reduction) or len(own) <= 1 else own[:-1]


def inner_ranges(node: ir.ComputedBuffer, outer: tuple) -> Optional[tuple]:
    """The node's inner loop ranges under ``outer``, or None if its leading dims do not
    iterate ``outer`` (each leading dim may span several outer dims: a reshape)."""
    data = node.data
    own = dims(data.ranges)
    blocks = _cover(own, outer)
    if blocks is None:
        return None
    if isinstance(data, ir.Reduction):
        return dims(data.reduction_ranges) if len(blocks) == len(own) else None
    return own[len(blocks):]


def node_indices(node: ir.ComputedBuffer, outer_vars: list, outer: tuple, inner_vars: list) -> tuple:
    """(index, reduction index) of ``node`` with its leading dims on ``outer_vars`` (a dim
    spanning several outer dims is their row-major combination) and its inner dims on
    ``inner_vars``; size-1 dims index 0."""
    data = node.data
    blocks = _cover(dims(data.ranges), outer) or []
    leading, start = [], 0
    for count in blocks:
        combined = sympy.Integer(0)
        for position in range(start, start + count):
            combined = combined * outer[position] + outer_vars[position]
        leading.append(combined)
        start += count
    variables = iter(leading + list(inner_vars))
    index = [sympy.Integer(0) if size == 1 else next(variables) for size in data.ranges]
    if not isinstance(data, ir.Reduction):
        return index, []
    variables = iter(inner_vars)
    return index, [sympy.Integer(0) if size == 1 else next(variables) for size in data.reduction_ranges]


def _cover(own: tuple, outer: tuple) -> Optional[list]:
    """How many consecutive ``outer`` dims each leading dim of ``own`` spans, until ``outer``
    is covered; None when the sizes do not line up."""
    blocks, j = [], 0
    for size in own:
        if j == len(outer):
            break
        start, extent = j, sympy.Integer(1)
        while j < len(outer):
            extent, j = extent * outer[j], j + 1
            if sympy.expand(extent - size) == 0:
                break
        else:
            return None
        blocks.append(j - start)
    return blocks if j == len(outer) else None


def same(a, b) -> bool:
    return a is not None and b is not None and len(a) == len(b) and all(
        sympy.expand(x - y) == 0 for x, y in zip(a, b))
