"""The graph's steps: its kernels (grouped by ``fusion``) interleaved with its extern calls
in execution order, and the memory plan over them (when each buffer dies, and which dead
buffer a new one reuses), from what each step of the plan reads and writes."""
from __future__ import annotations

import collections

import sympy

from .. import ir, symbolic
from ..graph import GraphLowering
from ..ir import ExternCall
from . import fusion
from .loop_nest import default_outer, inner_ranges, loads_of, node_indices
from .plan import KernelPlan, Step


def fuse(graph: GraphLowering, profile, tiles, loads: dict, enabled: bool = True) -> list:
    """The graph's ComputedBuffers grouped into kernels (``loop_nest.Group``), as the device
    model decides (one per node when ``enabled`` is False); ``tiles``: ``tiling.MatmulTiles``;
    ``loads``: ``loop_nest.loads_by_node``."""
    pinned = _pinned(graph, _alias_bases(graph))
    return fusion.group_nodes(graph, profile, tiles, loads, graph.storage(), _reader_counts(graph, loads), pinned,
                              enabled)


def execution_order(graph: GraphLowering, kernels: list) -> list:
    """The kernels (``plan.KernelPlan``) and the graph's extern calls, in execution order: a
    kernel where its first node was, a fused matmul inside its epilogue's kernel, a matmul
    generated alone where its call was."""
    by_node = {n.name: k for k in kernels for n in k.group.nodes}
    alone = {id(k.group.matmul): k for k in kernels if k.group.matmul is not None and not k.group.nodes}
    absorbed = {id(k.group.matmul) for k in kernels if k.group.matmul is not None}
    order, placed = [], set()
    for node in graph.nodes:
        if isinstance(node, ir.ComputedBuffer):
            kernel = by_node.get(node.name)   # None: computed in its matmul's operand loads
            if kernel is not None and kernel.name not in placed:
                placed.add(kernel.name)
                order.append(kernel)
        elif id(node) in alone:
            order.append(alone[id(node)])
        elif id(node) not in absorbed:  # a fused matmul runs as part of its epilogue's step
            order.append(node)
    return order


def plan_memory(graph: GraphLowering, work: list, loads: dict) -> list:
    """``plan.Step``s for ``work`` (KernelPlan and ExternPlan in execution order) with frees
    and reuse, from what each step reads and writes; ``loads``: ``loop_nest.loads_by_node``."""
    aliases = _alias_bases(graph)
    pinned = _pinned(graph, aliases)
    owned = _owned(graph)

    # a scatter takes over the copy it scatters into, in place
    inplace = {n.name: n.data.base for n in graph.nodes
               if isinstance(n, ir.ComputedBuffer) and isinstance(n.data, ir.Scatter)}
    last_use: dict[str, int] = {}
    for position, item in enumerate(work):
        for name in _reads(item) + [inplace[b.name] for b in _buffers(item) if b.name in inplace]:
            last_use[name] = position
    # a buffer viewed by a fallback output lives as long as that view
    for view, bases in aliases.items():
        for base in bases:
            if view in last_use:
                last_use[base] = max(last_use.get(base, -1), last_use[view])

    for position, item in enumerate(work):
        for name in _writes(item):
            last_use.setdefault(name, position)   # written, never read: dies at once
    # inputs are dropped after their last use too: AOTAutograd hands over its argument list (the
    # wrapper clears it), so a saved activation is freed as soon as the backward is done with it
    inputs = {value.name for kind, value, _ in graph.placeholders if kind == "tensor"}
    dying: dict[int, list] = collections.defaultdict(list)
    for name in sorted(last_use):
        if name not in pinned and (name in owned or name in inputs):
            dying[last_use[name]].append(name)

    aliased = {base for bases in aliases.values() for base in bases} | set(inplace.values())
    free_pool: list = []  # (layout, name) of dead computed buffers
    reuses: list = []
    for position, item in enumerate(work):
        taken = {}
        for buffer in _buffers(item):
            if buffer.name in inplace:
                taken[buffer.name] = inplace[buffer.name]
                continue
            over = next((name for name in dying[position] if name in item.reads and name not in taken.values()
                         and name not in aliased and _overwrites(buffer, owned.get(name), item, loads)), None)
            if over is not None:  # in place: its input is in cache, a new buffer is not
                taken[buffer.name] = over
                continue
            for i, (pooled_layout, name) in enumerate(free_pool):
                if pooled_layout == buffer.layout:
                    taken[buffer.name] = name
                    del free_pool[i]
                    break
        reuses.append(taken)
        free_pool += [(owned[n].layout, n) for n in dying[position] if isinstance(owned.get(n), ir.ComputedBuffer)
                      and n not in inplace.values() and n not in taken.values()]
    reused = {name for taken in reuses for name in taken.values()}
    # a reused buffer is handed over, not deleted
    return [Step(item, taken, tuple(name for name in dying[position] if name not in reused))
            for position, (item, taken) in enumerate(zip(work, reuses))]


def _overwrites(buffer, dead, kernel: KernelPlan, loads: dict) -> bool:
    """May ``buffer``, written by ``kernel``, take over ``dead`` (a buffer whose last reader is
    ``kernel``)?  Only where each element is read before it is written: ``dead`` has the same
    layout and is loaded by ``buffer``'s node elementwise, at the element it stores, and
    otherwise only by reductions that run before it over the same rows (a layer norm of a
    GEMM's output written over it: the row's mean and variance are taken before the row is
    written, where a new buffer would be written cold)."""
    if dead is None or not isinstance(buffer, ir.ComputedBuffer) or type(buffer.data) is not ir.Pointwise \
            or dead.layout != buffer.layout:
        return False
    if kernel.group.matmul is not None and dead.name in kernel.group.matmul.input_names():
        return False
    nodes = list(kernel.group.nodes)
    others = [node for node in nodes if node is not buffer and dead.name in loads[node.name]]
    if others and (kernel.group.column or any(not isinstance(node.data, ir.Reduction)
                                              or nodes.index(node) > nodes.index(buffer) for node in others)):
        return False
    outer = default_outer(buffer)
    outer_vars = list(symbolic.index_symbols("o", len(outer)))
    own = [(index, ranges) for name, index, ranges in loads_of(buffer, outer, outer_vars) if name == dead.name]
    if not own:
        return False
    inner_vars = list(symbolic.index_symbols("x", len(own[0][1])))
    index, _ = node_indices(buffer, outer_vars, outer, inner_vars)
    ranges = {**own[0][1], **dict(zip(outer_vars, outer))}
    stored = symbolic.simplify_index(buffer.layout.index(buffer.data.logical(index)), ranges)
    reads = list(own)
    for node in others:   # a reduction over the row: its loop variables are the row's
        if inner_ranges(node, outer) is None:
            return False
        theirs = [(index, ranges) for name, index, ranges in loads_of(node, outer, outer_vars) if name == dead.name]
        if any(node_ranges != own[0][1] for _, node_ranges in theirs):
            return False
        reads += theirs
    return all(sympy.expand(symbolic.simplify_index(i, ranges) - stored) == 0 for i, _ in reads)


def peak_bytes(steps: list, sizes: dict) -> int:
    """The most memory the plan holds at once in buffers the wrapper allocates or receives
    from ATen (graph inputs not counted), given ``sizes``: buffer name → bytes, for the buffers
    that own their memory (a view of another buffer has no entry)."""
    live = peak = 0
    for step in steps:
        live += sum(sizes.get(name, 0) for name in _writes(step.work) if name not in step.reuses)
        peak = max(peak, live)
        live -= sum(sizes.get(name, 0) for name in step.frees)
    return peak


def _buffers(work) -> list:
    return work.buffers if isinstance(work, KernelPlan) else []


def _reads(work) -> list:
    return work.reads if isinstance(work, KernelPlan) else work.call.input_names()


def _writes(work) -> list:
    if isinstance(work, KernelPlan):
        matmul = [work.group.matmul] if work.library_gemm else []  # the ATen call runs first
        return [b.name for b in work.buffers] + [b.name for call in matmul for b in call.outputs if b is not None]
    return [b.name for b in work.call.outputs if b is not None]


def outliving(graph: GraphLowering) -> set:
    """Buffers that outlive a call: its outputs, and what fallback outputs among them view."""
    return _pinned(graph, _alias_bases(graph))


def _pinned(graph: GraphLowering, aliases: dict) -> set:
    """Buffers that outlive the graph: its outputs, and what fallback outputs among them view."""
    pinned = {v.buffer.name for v in graph.outputs if isinstance(v, ir.StridedValue)}
    return pinned | {base for view, bases in aliases.items() if view in pinned for base in bases}


def _reader_counts(graph: GraphLowering, loads: dict) -> dict:
    """Buffer name → how many nodes (computed or extern) read it."""
    counts: dict = collections.Counter()
    for node in graph.nodes:
        counts.update(set(loads[node.name] if isinstance(node, ir.ComputedBuffer) else node.input_names()))
    return counts


def _owned(graph: GraphLowering) -> dict:
    """Buffers the wrapper allocates (or receives from ATen) and may free: name → Buffer."""
    owned = {}
    for node in graph.nodes:
        if isinstance(node, ir.ComputedBuffer):
            owned[node.name] = node
        else:
            owned.update({b.name: b for b in node.outputs if b is not None})
    return owned


def _alias_bases(graph: GraphLowering) -> dict:
    """Fallback outputs that may be views of their inputs (per the op schema) → those inputs."""
    aliases: dict[str, list] = {}
    for node in graph.nodes:
        if not isinstance(node, ExternCall):
            continue
        returns = getattr(getattr(node.op, "_schema", None), "returns", [])
        if not any(r.alias_info is not None for r in returns):
            continue
        inputs = node.input_names()
        for out in node.outputs:
            if out is not None:
                aliases[out.name] = [b for i in inputs for b in aliases.get(i, [i])]
    return aliases
