"""Turns the lowered graph into an execution plan: Kernel records (what each generated kernel
computes and which ATen ops it fused) interleaved with extern calls, plus the memory plan
(when each buffer dies, and which dead buffer a new one reuses)."""
from __future__ import annotations

import collections
import dataclasses
from typing import Optional

from . import ir
from .graph import ExternCall, GraphLowering


@dataclasses.dataclass
class Kernel:
    """One generated kernel.  ``origins`` and ``source`` are filled in by codegen."""
    name: str
    buffer: ir.ComputedBuffer
    target: str = "cpp"
    origins: list = dataclasses.field(default_factory=list)
    source: str = ""
    buffer_args: list = dataclasses.field(default_factory=list)
    symbol_args: list = dataclasses.field(default_factory=list)

    @property
    def reads(self) -> list:
        return [b for b in self.buffer_args if b != self.buffer.name]


@dataclasses.dataclass
class Step:
    work: "Kernel | ExternCall"
    reuses: Optional[str] = None                          # allocate by taking this dead buffer
    frees: list = dataclasses.field(default_factory=list)  # buffers dead after this step


def kernels_of(graph: GraphLowering) -> list:
    return [Kernel(f"kernel{k}", node) for k, node in
            enumerate(n for n in graph.nodes if isinstance(n, ir.ComputedBuffer))]


def plan_memory(graph: GraphLowering, kernels: list) -> list:
    """Steps in execution order with frees and reuse.  Needs each kernel's ``reads``."""
    by_buffer = {k.buffer.name: k for k in kernels}
    steps = [Step(by_buffer[n.name] if isinstance(n, ir.ComputedBuffer) else n) for n in graph.nodes]
    pinned = {v.buffer.name for v in graph.outputs if isinstance(v, ir.StridedValue)}
    aliases = _alias_bases(graph)
    owned = _owned(graph)

    last_use: dict[str, int] = {}
    for position, step in enumerate(steps):
        for name in _reads(step):
            last_use[name] = position
    # a buffer viewed by a fallback output lives as long as that view
    for view, bases in aliases.items():
        for base in bases:
            if view in pinned:
                pinned.add(base)
            if view in last_use:
                last_use[base] = max(last_use.get(base, -1), last_use[view])

    for position, step in enumerate(steps):
        for name in _writes(step):
            last_use.setdefault(name, position)   # written, never read: dies at once
    dying: dict[int, list] = collections.defaultdict(list)
    for name in sorted(last_use):
        if name not in pinned and name in owned:
            dying[last_use[name]].append(name)

    free_pool: list = []  # (layout, name) of dead computed buffers
    for position, step in enumerate(steps):
        if isinstance(step.work, Kernel):
            layout = step.work.buffer.layout
            for i, (pooled_layout, name) in enumerate(free_pool):
                if pooled_layout == layout:
                    step.reuses = name
                    del free_pool[i]
                    break
        step.frees = dying[position]
        free_pool += [(owned[n].layout, n) for n in step.frees if isinstance(owned[n], ir.ComputedBuffer)]
    reused = {step.reuses for step in steps if step.reuses}
    for step in steps:  # a reused buffer is handed over, not deleted
        step.frees = [name for name in step.frees if name not in reused]
    return steps


def _reads(step: Step) -> list:
    if isinstance(step.work, Kernel):
        return step.work.reads
    names = []
    _collect(step.work.args, names)
    _collect(step.work.kwargs, names)
    return names


def _writes(step: Step) -> list:
    if isinstance(step.work, Kernel):
        return [step.work.buffer.name]
    return [b.name for b in step.work.outputs if b is not None]


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
