"""The loops a kernel runs on the host, decided once: whether its outer loops run in parallel,
and per node its inner loops (split where div/mod indices would keep them scalar, see
``loop_nest.host_inner_ranges``), whether the innermost one is vectorized (``omp simd``),
whether the vector runs along the last outer loop instead (inner loops shorter than a vector:
a 3-channel image converted to channels-last) and whether it is a serial chain.  The C++
renderer emits these loops and the cost analysis counts them: neither derives them again."""
from __future__ import annotations

import dataclasses
from typing import Optional

import sympy
import torch

from .. import ir, symbolic
from .loop_nest import MAX_PARALLEL_DIMS, MIN_SPLIT, Group, host_inner_ranges

# float reductions whose combine vectorizes: sum and prod as an OpenMP reduction, max and min
# (of any dtype but bool) with a NaN flag (codegen.cpp._extremum)
_VECTOR_REDUCTIONS = {"sum", "prod"}
_EXTREMA = {"max", "min"}


@dataclasses.dataclass(frozen=True)
class NodeLoops:
    inner: tuple            # the node's inner loop ranges, as run (a split loop is two)
    split: Optional[int]    # the divisor its last loop was split by, or None
    vectorized: bool        # its innermost loop is a simd loop
    serial: bool            # a reduction (or scan, sort) whose combine is a serial chain
    outer_lanes: bool = False  # the simd loop is the last outer one, run inside the inner loops


@dataclasses.dataclass(frozen=True)
class LoopPlan:
    nodes: tuple                        # NodeLoops per node of the kernel, in order
    column: bool                        # a column reduction (loop_nest.Group.column)
    parallel_iterations: sympy.Expr     # of the parallel outer loop; 1: the kernel runs serially

    @property
    def parallel(self) -> bool:
        return self.parallel_iterations != 1


def node_loops(node: ir.ComputedBuffer, outer: tuple, column: bool) -> NodeLoops:
    """The loops of ``node`` under ``outer`` (``column``: its kernel is a column reduction,
    whose lanes run vectorized inside the reduction loop)."""
    inner, split = host_inner_ranges(node, outer)
    data = node.data
    serial = not column and (isinstance(data, ir.Scan) or isinstance(data, ir.Reduction) and not (
        data.reduction_type in _VECTOR_REDUCTIONS and data.dtype.is_floating_point
        or data.reduction_type in _EXTREMA and data.dtype != torch.bool))
    # a scatter's writes may collide: its loop runs in order
    vectorized = bool(inner) and not serial and not isinstance(data, ir.Scatter)
    return NodeLoops(inner, split, vectorized, serial)


def plan_loops(group: Group, memo: dict) -> LoopPlan:
    """The kernel's LoopPlan; ``memo`` keeps each node's loops between calls (fusion plans
    many candidate kernels of the same nodes)."""
    nodes = []
    for node in group.nodes:
        key = ("loops", node.name, group.outer, group.column)
        if key not in memo:
            memo[key] = node_loops(node, group.outer, group.column)
        nodes.append(memo[key])
    if _lanes_along_outer(group, nodes):
        nodes = [dataclasses.replace(nodes[0], outer_lanes=True)]
        parallel = group.parallel_iterations()
        return LoopPlan(tuple(nodes), False,
                        parallel if parallel == 1 else symbolic.product(group.outer[:-1][:MAX_PARALLEL_DIMS]))
    return LoopPlan(tuple(nodes), group.column, group.parallel_iterations())


def _lanes_along_outer(group: Group, nodes: list) -> bool:
    """Vectorize a lone elementwise node along its last outer loop (moved inside its inner
    loops, which g++ unrolls) where those inner loops are shorter than MIN_SPLIT and it is not:
    an NCHW image's 3 channels to channels-last ran 3-wide simd loops one pixel at a time,
    10x slower than 64 pixels per loop."""
    if len(group.nodes) != 1 or group.column or group.matmul is not None or len(group.outer) < 2:
        return False
    node, loops = group.nodes[0], nodes[0]
    last = group.outer[-1]
    return (type(node.data) is ir.Pointwise and loops.vectorized and loops.split is None
            and all(r.is_Integer for r in loops.inner) and int(symbolic.product(loops.inner)) < MIN_SPLIT
            and last.is_Integer and int(last) >= MIN_SPLIT)
