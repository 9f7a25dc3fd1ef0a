"""The device model applied to a scheduled graph: each kernel's cost analysis and tiling,
each matmul's tile, and estimates for every kernel and extern call in execution order (the
order matters: it decides which buffers are still resident on chip)."""
from __future__ import annotations

import dataclasses

import sympy
import torch

from .. import ir, symbolic
from ..graph import GraphLowering
from ..ir import ExternCall
from .scheduler import Kernel, peak_bytes
from .cost_model import Estimate, MemoryModel, estimate_kernel, estimate_matmul, estimate_memory_op
from .kernel_analysis import analyze
from .tiling import plan_kernel, plan_matmul

aten = torch.ops.aten


def plan_kernels(graph: GraphLowering, kernels: list, profile) -> None:
    """Fill in each kernel's ``cost`` (KernelCost) and ``tiling`` on ``profile``."""
    storage, memo = graph.storage(), {}
    for kernel in kernels:
        kernel.cost = analyze(kernel.group, storage, graph.size_hints, memo)
        kernel.tiling = plan_kernel(kernel.cost, profile, kernel.cost.reduction)


def matmul_tiling(call: ExternCall, hints: dict, profile):
    """The tile ``profile`` would run this extern matmul with (None: not a matmul, or the
    host, whose GEMM is ATen's)."""
    shape = call.matmul_shape(hints)
    return plan_matmul(*shape, profile) if shape else None


def estimate_graph(graph: GraphLowering, steps: list, profile) -> list:
    """One Estimate per step of ``steps`` (Kernel or ExternCall)."""
    hints = graph.size_hints
    storage = graph.storage()
    inputs = {value.name: storage[value.name][0] * storage[value.name][1].itemsize
              for kind, value, _ in graph.placeholders if kind == "tensor"}
    memory = MemoryModel(profile, {name: _value(n, hints) for name, n in inputs.items()})
    out = []
    for step in steps:
        work = step.work
        if isinstance(work, Kernel) and work.group.matmul is not None:
            out.append(_estimate_epilogue_kernel(work, hints, profile, memory))
        elif isinstance(work, Kernel):
            out.append(estimate_kernel(work.cost, profile, memory, work.group.nodes[-1].get_dtype()))
        else:
            out.append(_estimate_extern(work, hints, profile, memory))
    return out


def peak_memory(graph: GraphLowering, steps: list) -> int:
    """Bytes of intermediate and output buffers live at once at the plan's peak (the
    activations a run of this graph needs beyond its inputs)."""
    hints = graph.size_hints
    sizes = {}
    for node in graph.nodes:
        buffers = [node] if isinstance(node, ir.ComputedBuffer) else [b for b in node.outputs if b is not None]
        sizes.update((b.name, _value(b.layout.storage_extent(), hints) * b.get_dtype().itemsize)
                     for b in buffers if b.owns_storage)
    return peak_bytes(steps, sizes)


def _estimate_epilogue_kernel(kernel: Kernel, hints, profile, memory) -> Estimate:
    """A matmul with its epilogue applied to each output tile: one launch; the matmul output
    reaches memory only if something else reads it."""
    call = kernel.group.matmul
    out = call.outputs[0].name
    matmul = _estimate_extern(call, hints, profile, memory, keep_output=out not in kernel.group.local)
    cost = dataclasses.replace(kernel.cost, reads={n: b for n, b in kernel.cost.reads.items() if n != out})
    epilogue = estimate_kernel(cost, profile, memory, kernel.group.nodes[-1].get_dtype())
    compute, mem = matmul.compute_us + epilogue.compute_us, matmul.memory_us + epilogue.memory_us
    return Estimate(max(compute, mem) + matmul.launch_us, compute, mem, matmul.launch_us,
                    matmul.flops + epilogue.flops, matmul.bytes + epilogue.bytes)


def _value(expr, hints) -> int:
    return int(sympy.sympify(expr).subs(hints))


def _tensor_bytes(value: ir.StridedValue, hints) -> float:
    return _value(symbolic.product(value.layout.size), hints) * value.get_dtype().itemsize


def _estimate_extern(call: ExternCall, hints, profile, memory, keep_output: bool = True):
    tensors = [a for a in call.args if isinstance(a, ir.StridedValue)]
    reads = {}
    for t in tensors:
        reads[t.buffer.name] = reads.get(t.buffer.name, 0) + _tensor_bytes(t, hints)
    writes = {b.name: _value(symbolic.product(b.layout.size), hints) * b.get_dtype().itemsize
              for b in call.outputs if b is not None and keep_output}
    shape = call.matmul_shape(hints)
    if shape:
        return estimate_matmul(*shape, reads, writes, profile, memory)
    if call.op == aten.convolution.default:  # an implicit GEMM: (N·H·W) × Cout × (Cin/groups·kh·kw)
        out, weight = call.outputs[0], tensors[1]
        channels = _value(out.layout.size[1], hints)
        rows = _value(symbolic.product(out.layout.size), hints) // max(channels, 1)
        depth = _value(symbolic.product(weight.layout.size[1:]), hints)
        return estimate_matmul(1, rows, channels, depth, weight.get_dtype(), reads, writes, profile, memory)
    elements = sum(writes.values()) / 4
    return estimate_memory_op(reads, writes, elements, profile, memory)
