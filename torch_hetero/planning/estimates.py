"""The device model applied to a scheduled graph: estimates for every kernel and extern call
in execution order (the order matters: it decides which buffers are still resident on chip),
and the activations' peak."""
from __future__ import annotations

import dataclasses

import sympy
import torch

from .. import ir, symbolic
from ..graph import GraphLowering
from ..ir import ExternCall
from .cost_model import (Estimate, MemoryModel, estimate_attention, estimate_kernel, estimate_library_attention,
                         estimate_matmul, estimate_memory_op, sort_flops)
from .kernel_analysis import extern_traffic
from .loop_nest import loaded_buffers
from .plan import KernelPlan
from .scheduler import peak_bytes

aten = torch.ops.aten


def estimate_steps(graph: GraphLowering, work: list, profile) -> list:
    """One Estimate per item of ``work`` (``plan.KernelPlan`` or ``plan.ExternPlan``, in
    execution order)."""
    hints = graph.size_hints
    storage = graph.storage()
    inputs = {value.name: storage[value.name][0] * storage[value.name][1].itemsize
              for kind, value, _ in graph.placeholders if kind == "tensor"}
    memory = MemoryModel(profile, {name: _value(n, hints) for name, n in inputs.items()})
    nodes = {n.name: n for n in graph.nodes if isinstance(n, ir.ComputedBuffer)}
    out = []
    for item in work:
        if isinstance(item, KernelPlan) and item.group.in_template and profile.target.matmul_epilogue:
            out.append(Estimate(0.0, 0.0, 0.0, 0.0, 0.0, 0.0))   # the device's template computes it as it loads
        elif isinstance(item, KernelPlan) and item.attention_tile is not None:
            out.append(_estimate_attention_kernel(item.group.matmul, item.attention_tile, hints, profile, memory))
        elif isinstance(item, KernelPlan) and item.group.matmul is not None:
            out.append(_estimate_epilogue_kernel(item, hints, profile, memory, storage, nodes, graph.constants))
        elif isinstance(item, KernelPlan):
            cost = dataclasses.replace(item.cost, flops=item.cost.flops + sort_flops(item.cost, item.tiling))
            out.append(estimate_kernel(cost, profile, memory, item.group.nodes[-1].get_dtype()))
        else:
            out.append(_estimate_extern(item.call, hints, profile, memory))
    return out


def peak_memory(graph: GraphLowering, steps: list, profile) -> int:
    """Bytes of intermediate and output buffers live at once at the plan's peak (the
    activations a run of this graph needs beyond its inputs) on the profile's device: a
    dequantized operand its template computes as it loads takes none there."""
    hints = graph.size_hints
    sizes = {}
    for node in graph.nodes:
        buffers = [node] if isinstance(node, ir.ComputedBuffer) else [b for b in node.outputs if b is not None]
        sizes.update((b.name, _value(b.layout.storage_extent(), hints) * b.get_dtype().itemsize)
                     for b in buffers if b.owns_storage)
    if profile.target.matmul_epilogue:
        sizes.update((n.name, 0) for step in steps if isinstance(step.work, KernelPlan) and step.work.group.in_template
                     for n in step.work.group.nodes)
    return peak_bytes(steps, sizes)


def _estimate_epilogue_kernel(kernel: KernelPlan, hints, profile, memory, storage: dict, nodes: dict,
                              constants: dict) -> Estimate:
    """A matmul with its epilogue (if any) applied to each output tile: one launch; the matmul
    output reaches memory only if something else reads it, and an operand its template
    computes as it loads (``Group.dequantized``) is read as the buffers it is computed from."""
    call = kernel.group.matmul
    out = call.result.name
    reads, writes = extern_traffic(call, hints, keep_output=out not in kernel.group.local)
    for name in sorted(kernel.group.dequantized):
        del reads[name]
        for source in loaded_buffers(nodes[name]):
            if source in storage:
                elements, dtype = storage[source]
                reads[source] = _value(elements, hints) * dtype.itemsize
            else:   # a frozen constant
                reads[source] = constants[source].numel() * constants[source].element_size()
    tile = kernel.matmul_tile
    matmul = estimate_matmul(*call.matmul_shape(hints), reads, writes, profile, memory, tile.seconds if tile else None)
    if not kernel.group.nodes:  # a matmul generated alone
        return matmul
    cost = dataclasses.replace(kernel.cost, reads={n: b for n, b in kernel.cost.reads.items() if n != out})
    epilogue = estimate_kernel(cost, profile, memory, kernel.group.nodes[-1].get_dtype())
    compute, mem = matmul.compute_us + epilogue.compute_us, matmul.memory_us + epilogue.memory_us
    return Estimate(max(compute, mem) + matmul.launch_us, compute, mem, matmul.launch_us,
                    matmul.flops + epilogue.flops, matmul.bytes + epilogue.bytes)


def _value(expr, hints) -> int:
    return int(sympy.sympify(expr).subs(hints))


def _estimate_attention_kernel(call: ExternCall, tile, hints, profile, memory) -> Estimate:
    """Our flash attention: every tensor it reads (the mask, a keyword argument, included)."""
    return estimate_attention(call.attention_shape(hints), tile, *extern_traffic(call, hints), profile, memory)


def _estimate_extern(call: ExternCall, hints, profile, memory):
    """An ATen call."""
    tensors = [a for a in call.args if isinstance(a, ir.StridedValue)]
    reads, writes = extern_traffic(call, hints)
    shape = call.matmul_shape(hints)
    if shape:
        return estimate_matmul(*shape, reads, writes, profile, memory)
    if call.attention_shape(hints) is not None and profile.attention_efficiency:
        return estimate_library_attention(call.attention_shape(hints), reads, writes, profile, memory)
    if call.op == aten.convolution.default:  # an implicit GEMM: (N·H·W) × Cout × (Cin/groups·kh·kw)
        out, weight = call.outputs[0], tensors[1]
        channels = _value(out.layout.size[1], hints)
        rows = _value(symbolic.product(out.layout.size), hints) // max(channels, 1)
        depth = _value(symbolic.product(weight.layout.size[1:]), hints)
        return estimate_matmul(1, rows, channels, depth, weight.get_dtype(), reads, writes, profile, memory)
    elements = sum(writes.values()) / 4
    return estimate_memory_op(reads, writes, elements, profile, memory)
