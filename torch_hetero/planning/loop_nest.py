"""How the nodes of one kernel map onto its loops.

A kernel is a group of nodes sharing one outer loop nest (``outer`` ranges, run in
parallel); inside it each node runs its own inner loop: a reduction over its reduction
ranges, a pointwise node over its trailing dims.  Codegen, the cost analysis and fusion all
index nodes the same way through this module."""
from __future__ import annotations

import dataclasses
from typing import Optional

import sympy

from .. import ir, symbolic
from ..ops_protocol import LoadRecorder
from ..virtualized import set_ops_handler

PARALLEL_MIN_ELEMENTS = 32768   # below this, OpenMP fork/join costs more than it saves
MAX_PARALLEL_DIMS = 3           # outer loops collapsed into the parallel one


@dataclasses.dataclass(frozen=True)
class Group:
    """A kernel's nodes, as fusion decided them (part of the frozen ``plan.Plan``)."""
    nodes: tuple                # ComputedBuffers, in execution order
    outer: tuple                # ranges of the shared outer loops
    local: frozenset = frozenset()   # reductions kept in registers (and a fused matmul's output tile)
    reread: frozenset = frozenset()  # stored reductions later nodes also read
    decisions: tuple = ()       # why each node joined or not
    matmul: object = None       # the ExternCall this kernel generates: a matmul (the nodes, if any, its
                                # epilogue) or a fused attention (alone, ``KernelPlan.attention_tile``)
    column: bool = False        # one column reduction (host): reduction loop outside, outputs vectorized
    dequantized: frozenset = frozenset()  # its matmul's operands the template computes as it loads
                                          # them (``ir.Dequantized``), never written
    in_template: bool = False   # one such operand's node: a kernel only where the GEMM is a library's

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


def rows_split(node: ir.ComputedBuffer, size) -> bool:
    """Does ``node`` iterate a 2-d matmul output of ``size`` with its rows split in several
    dims (a linear layer's [tokens, n] output viewed as [batch, sequence, n])?"""
    own = dims(node.data.ranges)
    return len(size) == 2 and len(own) > 2 and same((symbolic.product(own[:-1]), own[-1]), tuple(size))


def unravel(row, sizes: tuple) -> list:
    """The row-major indices over ``sizes`` of the flat index ``row``."""
    out = []
    for position in range(len(sizes)):
        inner = symbolic.product(sizes[position + 1:])
        out.append(symbolic.ModularIndexing(row, inner, sizes[position]) if position else symbolic.FloorDiv(row, inner))
    return out


def same(a, b) -> bool:
    return a is not None and b is not None and len(a) == len(b) and all(
        sympy.expand(x - y) == 0 for x, y in zip(a, b))


def loads_of(node: ir.ComputedBuffer, outer: tuple, outer_vars: list) -> list:
    """(buffer, index, inner ranges by variable) of every load of ``node`` in a group."""
    inner = inner_ranges(node, outer)
    inner_vars = list(symbolic.index_symbols("x", len(inner)))
    index, rindex = node_indices(node, outer_vars, outer, inner_vars)
    recorder = LoadRecorder()
    with set_ops_handler(recorder):
        if isinstance(node.data, ir.Reduction):
            node.data.inner_fn(index, rindex)
        else:
            node.data.inner_fn(index)
        if isinstance(node.data, ir.Scatter):
            node.data.output_index(index)
    ranges = dict(zip(inner_vars, inner))
    return [(name, idx, ranges) for name, idx in recorder.loads]


MIN_SPLIT = 8   # the inner loop after a split is at least this long (a vector of floats or more)


def _divmod_atoms(expr, var) -> list:
    return [a for a in expr.atoms(symbolic.FloorDiv, symbolic.ModularIndexing) if var in a.free_symbols]


def host_inner_ranges(node: ir.ComputedBuffer, outer: tuple) -> tuple:
    """(inner ranges, split) of a node as host (C++) loops run it.  A pointwise node whose loads
    reach the innermost variable x through x // d and x % d (a view across a reshape: heads
    transposed, rotary halves) has that loop split in two, x = x' * d + x'': every index becomes
    affine in x'' and the loop vectorizes, where g++ computed the divisions per element.
    ``split`` is d (the last two ranges are x' and x''), or None."""
    inner = inner_ranges(node, outer)
    if type(node.data) is not ir.Pointwise or not inner or not inner[-1].is_Integer:
        return inner, None
    outer_vars = list(symbolic.index_symbols("o", len(outer)))
    x = symbolic.index_symbols("x", len(inner))[-1]
    indices = [index for _, index, _ in loads_of(node, outer, outer_vars)]
    atoms = [a for index in indices for a in _divmod_atoms(index, x)]
    candidates = {int(a.args[1]) if isinstance(a, symbolic.FloorDiv) else int(a.args[1] * a.args[2])
                  for a in atoms if all(arg.is_Integer for arg in a.args[1:])}
    size = int(inner[-1])
    high, low = sympy.symbols("split_high split_low", integer=True, nonnegative=True)
    for d in sorted(candidates, reverse=True):
        if d < MIN_SPLIT or d >= size or size % d:
            continue
        ranges = {high: sympy.Integer(size // d), low: sympy.Integer(d)}
        if not any(_divmod_atoms(symbolic.simplify_index(index.subs(x, high * d + low), ranges), low)
                   for index in indices):
            return inner[:-1] + (sympy.Integer(size // d), sympy.Integer(d)), d
    return inner, None


def split_vars(inner_vars: list, split) -> list:
    """The node's inner index variables over loops from ``host_inner_ranges``: the split
    loops' two variables recombined."""
    if split is None:
        return list(inner_vars)
    return list(inner_vars[:-2]) + [inner_vars[-2] * split + inner_vars[-1]]


def loaded_buffers(node) -> list:
    """Names of the buffers ``node`` loads."""
    outer = default_outer(node)
    return [name for name, _, _ in loads_of(node, outer, list(symbolic.index_symbols("o", len(outer))))]


def loads_by_node(nodes) -> dict:
    """Node name → ``loaded_buffers``, for each ComputedBuffer of ``nodes``: found once per
    graph (it runs the node's inner function) for fusion, reader counts and the memory plan."""
    return {n.name: loaded_buffers(n) for n in nodes if isinstance(n, ir.ComputedBuffer)}
