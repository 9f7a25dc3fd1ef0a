"""Turns the lowered graph into an execution plan: Kernel records (the nodes each generated
kernel computes, as grouped by ``fusion``, and which ATen ops it fused) interleaved with
extern calls, plus the memory plan (when each buffer dies, and which dead buffer a new one
reuses); ``schedule_text`` prints that plan as stable text (explain, the log, the goldens)."""
from __future__ import annotations

import collections
import dataclasses
from .. import ir
from ..graph import GraphLowering
from ..ir import ExternCall
from . import fusion
from .loop_nest import Group, loaded_buffers


@dataclasses.dataclass
class Kernel:
    """One generated kernel.  ``origins`` and ``source`` are filled in by codegen."""
    name: str
    group: Group
    target: str = "cpp"
    origins: list = dataclasses.field(default_factory=list)
    source: str = ""
    buffer_args: list = dataclasses.field(default_factory=list)
    symbol_args: list = dataclasses.field(default_factory=list)
    cost: object = None        # KernelCost, from the device model
    tiling: object = None      # KernelTiling on the target profile
    triton: object = None      # the TritonKernel, when this kernel runs as Triton
    may_divide_by_zero: bool = False  # a host kernel's integer division by a value (see cpp_prelude.h)

    @property
    def buffers(self) -> list:
        """The buffers this kernel writes to memory (a Triton matmul template writes its
        output unless only the epilogue reads it; on the host ATen writes it)."""
        matmul = self.group.matmul
        if matmul is not None and self.target == "triton" and matmul.outputs[0].name not in self.group.local:
            return [matmul.outputs[0]] + self.group.stored
        return self.group.stored

    @property
    def reads(self) -> list:
        written = {b.name for b in self.buffers}
        return [b for b in self.buffer_args if b not in written]


@dataclasses.dataclass
class Step:
    work: "Kernel | ExternCall"
    reuses: dict = dataclasses.field(default_factory=dict)  # new buffer → the dead buffer it takes
    frees: list = dataclasses.field(default_factory=list)   # buffers dead after this step


def kernels_of(graph: GraphLowering, profile, fuse: bool = True) -> list:
    """The graph's ComputedBuffers grouped into kernels, as the device model decides (one
    kernel per node when ``fuse`` is False)."""
    pinned = _pinned(graph, _alias_bases(graph))
    groups = fusion.group_nodes(graph, profile, graph.storage(), _reader_counts(graph), pinned, fuse)
    return [Kernel(f"kernel{k}", group) for k, group in enumerate(groups)]


def plan_memory(graph: GraphLowering, kernels: list) -> list:
    """Steps in execution order with frees and reuse.  Needs each kernel's ``reads``."""
    by_node = {n.name: k for k in kernels for n in k.group.nodes}
    absorbed = {id(k.group.matmul) for k in kernels if k.group.matmul is not None}
    steps, placed = [], set()
    for node in graph.nodes:
        if isinstance(node, ir.ComputedBuffer):
            kernel = by_node[node.name]
            if kernel.name not in placed:
                placed.add(kernel.name)
                steps.append(Step(kernel))
        elif id(node) not in absorbed:  # a fused matmul runs as part of its epilogue's step
            steps.append(Step(node))
    aliases = _alias_bases(graph)
    pinned = _pinned(graph, aliases)
    owned = _owned(graph)

    # a scatter takes over the copy it scatters into, in place
    inplace = {n.name: n.data.base for n in graph.nodes
               if isinstance(n, ir.ComputedBuffer) and isinstance(n.data, ir.Scatter)}
    last_use: dict[str, int] = {}
    for position, step in enumerate(steps):
        for name in _reads(step) + [inplace[b.name] for b in _buffers(step) if b.name in inplace]:
            last_use[name] = position
    # a buffer viewed by a fallback output lives as long as that view
    for view, bases in aliases.items():
        for base in bases:
            if view in last_use:
                last_use[base] = max(last_use.get(base, -1), last_use[view])

    for position, step in enumerate(steps):
        for name in _writes(step):
            last_use.setdefault(name, position)   # written, never read: dies at once
    # inputs are dropped after their last use too: AOTAutograd hands over its argument list (the
    # wrapper clears it), so a saved activation is freed as soon as the backward is done with it
    inputs = {value.name for kind, value, _ in graph.placeholders if kind == "tensor"}
    dying: dict[int, list] = collections.defaultdict(list)
    for name in sorted(last_use):
        if name not in pinned and (name in owned or name in inputs):
            dying[last_use[name]].append(name)

    free_pool: list = []  # (layout, name) of dead computed buffers
    for position, step in enumerate(steps):
        if isinstance(step.work, Kernel):
            for buffer in step.work.buffers:
                if buffer.name in inplace:
                    step.reuses[buffer.name] = inplace[buffer.name]
                    continue
                for i, (pooled_layout, name) in enumerate(free_pool):
                    if pooled_layout == buffer.layout:
                        step.reuses[buffer.name] = name
                        del free_pool[i]
                        break
        step.frees = dying[position]
        free_pool += [(owned[n].layout, n) for n in step.frees
                      if isinstance(owned.get(n), ir.ComputedBuffer) and n not in inplace.values()]
    reused = {name for step in steps for name in step.reuses.values()}
    for step in steps:  # a reused buffer is handed over, not deleted
        step.frees = [name for name in step.frees if name not in reused]
    return steps


def peak_bytes(steps: list, sizes: dict) -> int:
    """The most memory the plan holds at once in buffers the wrapper allocates or receives
    from ATen (graph inputs not counted), given ``sizes``: buffer name → bytes, for the buffers
    that own their memory (a view of another buffer has no entry)."""
    live = peak = 0
    for step in steps:
        live += sum(sizes.get(name, 0) for name in _writes(step) if name not in step.reuses)
        peak = max(peak, live)
        live -= sum(sizes.get(name, 0) for name in step.frees)
    return peak


def _buffers(step: Step) -> list:
    return step.work.buffers if isinstance(step.work, Kernel) else []


def _reads(step: Step) -> list:
    names: list = []
    work = step.work
    if isinstance(work, Kernel):
        names += work.reads
        work = work.group.matmul if work.target == "cpp" else None  # the ATen call runs first
    if work is not None:
        _collect((work.args, work.kwargs), names)
    return names


def _writes(step: Step) -> list:
    work = step.work
    names = []
    if isinstance(work, Kernel):
        names += [b.name for b in work.buffers]
        work = work.group.matmul if work.target == "cpp" else None
    return names + ([b.name for b in work.outputs if b is not None] if work is not None else [])


def _pinned(graph: GraphLowering, aliases: dict) -> set:
    """Buffers that outlive the graph: its outputs, and what fallback outputs among them view."""
    pinned = {v.buffer.name for v in graph.outputs if isinstance(v, ir.StridedValue)}
    return pinned | {base for view, bases in aliases.items() if view in pinned for base in bases}


def _reader_counts(graph: GraphLowering) -> dict:
    """Buffer name → how many nodes (computed or extern) read it."""
    counts: dict = collections.Counter()
    for node in graph.nodes:
        names: list = []
        if isinstance(node, ir.ComputedBuffer):
            names = loaded_buffers(node)
        else:
            _collect((node.args, node.kwargs), names)
        counts.update(set(names))
    return counts


def _collect(tree, out: list) -> None:
    if isinstance(tree, ir.StridedValue):
        out.append(tree.buffer.name)
    elif isinstance(tree, (list, tuple)):
        for x in tree:
            _collect(x, out)
    elif isinstance(tree, dict):
        for x in tree.values():
            _collect(x, out)


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
        inputs: list = []
        _collect((node.args, node.kwargs), inputs)
        for out in node.outputs:
            if out is not None:
                aliases[out.name] = [b for i in inputs for b in aliases.get(i, [i])]
    return aliases


def schedule_text(graph) -> str:
    """A compiled graph's plan as stable text (the golden tests' form): per kernel its nodes
    (local ones marked), outer loops, tiling, fused ATen ops and fusion decisions; per
    extern call its op and, for matmuls, the tile."""
    lines = []
    for step in graph.steps:
        work = step.work
        tiling = graph.tilings.get(id(work))
        if hasattr(work, "group"):
            group = work.group
            nodes = ", ".join(f"{n.name}{' (local)' if n.name in group.local else ''}" for n in group.nodes)
            lines.append(f"{work.name}: {nodes}; outer ({', '.join(str(r) for r in group.outer)}); {tiling}")
            if group.matmul is not None:
                lines.append(f"  epilogue of {group.matmul.name}: {graph.tilings.get(id(group.matmul))}")
            lines.append(f"  fuses {', '.join(work.origins) or '(copy)'}")
            lines += [f"  {decision}" for decision in group.decisions]
        else:
            lines.append(f"{work.kind} {work.name}" + (f": {tiling}" if tiling else ""))
    return "\n".join(lines)
