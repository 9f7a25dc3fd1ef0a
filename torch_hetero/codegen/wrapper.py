"""Renders the Python wrapper of a graph: bind size symbols, allocate (or reuse) buffers, call
kernels and extern ATen ops in order, free dead buffers, return the outputs."""
from __future__ import annotations

import dataclasses

import sympy
import torch

from .. import ir
from ..graph import GraphLowering
from ..ir import ExternCall
from ..planning.plan import KernelPlan, Plan, Step
from ..planning.scheduler import outliving
from ..printer import pexpr


def render_wrapper(graph: GraphLowering, plan: Plan, rendered: dict, device=None) -> str:
    """``rendered``: kernel name → its rendered kernel in the language that runs it (its
    ``launch()`` lines); ``device``: where buffers are allocated (None: the CPU)."""
    kept = _kept_slots(graph, plan) if device is None else {}
    lines = ["kept_buffers = KeptBuffers([" + ", ".join(kept.values()) + "])", ""] if kept else []
    lines.append("def call(args):")
    body = []
    names = [value.name if kind == "tensor" else f"sym{i}" for i, (kind, value, _) in enumerate(graph.placeholders)]
    if names:
        body.append(f"{', '.join(names)}{',' if len(names) == 1 else ''} = args")
        body.append("args.clear()  # boxed call: the inputs are ours to free after their last use")
    body += _bind_symbols(graph, names)
    body += [f"{name} = {code}" for name, code in graph.scalar_defs]
    body.append("sync_threads()")
    slots = {name: slot for slot, name in enumerate(kept)}
    if kept:
        body.append("kept = kept_buffers.take()")
    for step in plan.steps:
        body += _render_step(step, rendered, device, slots)
        frees = list(step.frees) + _overwritten(step)
        if frees:
            body.append(f"del {', '.join(frees)}")
    if kept:
        body.append("kept_buffers.give(kept)")
    outputs = [_output_expr(v) for v in graph.outputs]
    body.append(f"return ({', '.join(outputs)}{',' if len(outputs) == 1 else ''})")
    return "\n".join(lines + ["    " + line for line in body]) + "\n"


def _bind_symbols(graph: GraphLowering, names: list) -> list:
    """``s0 = arg1.size(0)``: each size symbol from the first input that carries it."""
    needed = sorted(graph.size_symbols(), key=lambda s: s.name)
    bound, lines = set(), []
    for (kind, value, meta), name in zip(graph.placeholders, names):
        if kind == "symint" and value.is_Symbol and value not in bound:
            lines.append(f"{value.name} = {name}")
            bound.add(value)
        elif kind == "tensor":
            for attr, exprs in (("size", value.layout.size), ("stride", value.layout.stride)):
                for dim, expr in enumerate(exprs):
                    if expr.is_Symbol and expr not in bound:
                        lines.append(f"{expr.name} = {name}.{attr}({dim})")
                        bound.add(expr)
    missing = [s for s in needed if s not in bound]
    if missing:
        raise NotImplementedError(f"size symbols {missing} cannot be read from the graph inputs")
    return lines


def _kept_slots(graph: GraphLowering, plan: Plan) -> dict:
    """Buffer allocated → its spec, for the buffers kept between calls
    (``runtime.kept_buffers``): of static layout, and neither they nor any buffer that takes
    them over later (``Step.reuses``) outlives the call."""
    root, specs = {}, {}
    for step in plan.steps:
        for buffer in step.work.buffers if isinstance(step.work, KernelPlan) else []:
            if buffer.name in step.reuses:
                root[buffer.name] = root.get(step.reuses[buffer.name])
                continue
            layout = buffer.layout
            if all(e.is_number for e in (*layout.size, *layout.stride)):
                root[buffer.name] = buffer.name
                specs[buffer.name] = f"({_tuple(layout.size)}, {_tuple(layout.stride)}, {_dtype(layout.dtype)})"
    escaping = {root.get(name) for name in outliving(graph)}
    return {name: spec for name, spec in specs.items() if name not in escaping}


def _overwritten(step: Step) -> list:
    """The buffers a kernel of ``step`` overwrote in place (named until it ran)."""
    if not isinstance(step.work, KernelPlan):
        return []
    return [dead for dead in step.reuses.values() if dead in step.work.reads]


def _render_step(step: Step, rendered: dict, device, slots: dict) -> list:
    work = step.work
    if isinstance(work, KernelPlan):
        alloc = _render_extern(work.group.matmul) if work.library_gemm else []
        for buffer in work.buffers:
            if buffer.name in step.reuses:
                dead = step.reuses[buffer.name]
                if dead in work.reads:   # overwritten in place: the kernel reads it by its name, then it goes
                    alloc.append(f"{buffer.name} = {dead}")
                else:
                    alloc.append(f"{buffer.name} = {dead}; del {dead}")
            elif buffer.name in slots:
                alloc.append(f"{buffer.name} = kept[{slots[buffer.name]}]")
            else:
                layout = buffer.layout
                where = f", device={str(device)!r}" if device is not None else ""
                alloc.append(f"{buffer.name} = empty_strided({_tuple(layout.size)}, {_tuple(layout.stride)}, "
                             f"dtype={_dtype(layout.dtype)}{where})")
        return alloc + ([] if work.library_only else rendered[work.name].launch())
    return _render_extern(work.call)


def _render_extern(call: ExternCall) -> list:
    args = [_arg(a) for a in call.args] + [f"{k}={_arg(v)}" for k, v in call.kwargs.items()]
    target = _op_path(call.op)
    outs = [b.name if b is not None else "_" for b in call.outputs]
    lhs = (", ".join(outs) + ("," if len(outs) == 1 else "")) if call.tuple_result else outs[0]
    return [f"{lhs} = {target}({', '.join(args)})"]


def _op_path(op) -> str:
    if isinstance(op, torch._ops.HigherOrderOperator):  # e.g. with_effects, around an op with side effects
        return f"torch.ops.higher_order.{op.name()}"
    namespace, rest = op.name().split("::")
    return f"torch.ops.{namespace}.{rest.split('.')[0]}.{op._overloadname}"


def _arg(value) -> str:
    if isinstance(value, ir.StridedValue):
        return _view_expr(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_arg(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, sympy.Expr):
        return pexpr(value) if not value.is_Float else repr(float(value))
    if isinstance(value, torch.dtype):
        return _dtype(value)
    if isinstance(value, torch._ops.OpOverload):
        return _op_path(value)
    if isinstance(value, (torch.device, torch.layout, torch.memory_format)):
        return f"torch.{value}" if not isinstance(value, torch.device) else f"torch.device({str(value)!r})"
    if isinstance(value, float):
        return f"float({str(value)!r})" if value != value or value in (float("inf"), float("-inf")) else repr(value)
    if isinstance(value, (bool, int, str, type(None))):
        return repr(value)
    raise NotImplementedError(f"cannot pass {type(value).__name__} to an extern call")


def _view_expr(value: ir.StridedValue) -> str:
    """The tensor a strided value is: its buffer, read as the value's dtype (``aten.view.dtype``,
    the same size), reinterpreted to its sizes and strides."""
    layout, base = value.layout, value.buffer.name
    if layout.dtype != value.buffer.layout.dtype:
        base = f"{base}.view({_dtype(layout.dtype)})"
    if dataclasses.replace(layout, dtype=value.buffer.layout.dtype) == value.buffer.layout:
        return base
    return f"reinterpret({base}, {_tuple(layout.size)}, {_tuple(layout.stride)}, {pexpr(layout.offset)})"


def _output_expr(value) -> str:
    if isinstance(value, ir.StridedValue):
        return _view_expr(value)
    return _arg(value)


def _tuple(exprs) -> str:
    items = [pexpr(e) for e in exprs]
    return f"({', '.join(items)}{',' if len(items) == 1 else ''})"


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype)
