"""The planning passes of one lowered graph, in order — fuse → tile → estimate → plan memory —
each taking what the ones before decided and adding its own, ending in one frozen ``Plan``."""
from __future__ import annotations

import dataclasses

import torch

from ..device_models.target import LANGUAGES
from ..graph import GraphLowering
from ..ir import ATTENTIONS, DEVICE_ATTENTION_CALLS, GROUPED_MATMUL, MATMULS, Sort
from ..lowering.extern import grouped_mm_problem
from ..lowering.onednn import FUSED_CONVOLUTIONS, PACKED_LINEAR
from . import scheduler
from .dtype_debt import dtype_debt
from .estimates import estimate_steps, peak_memory
from .gemm_choice import choose, choose_attention, libraries
from .kernel_analysis import analyze
from .loop_nest import loads_by_node
from .plan import ExternPlan, KernelPlan, Plan
from .tiling import MatmulTiles, plan_attention, plan_kernel


def build_plan(graph: GraphLowering, profile, target: str, fuse: bool = True, estimate: bool = True,
               tuning=None, notes: tuple = ()) -> Plan:
    """``graph``'s plan on ``profile``.  ``target``: the language of the code that runs its
    kernels (the executor's choice: memory planning depends on it, as a library GEMM writes
    its output itself); ``fuse``: False gives one kernel per node; ``estimate``: estimate
    every step and the activations' peak (for reports: plain compiles skip it); ``tuning``:
    what max-autotune measured (``gemm_choice.Tuning``; None: not asked for); ``notes``: the
    whole-graph decisions made before lowering (the host's layout, ``host_library``)."""
    tiles = MatmulTiles(profile, graph.size_hints, tuning)
    loads = loads_by_node(graph.nodes)
    generates_gemm = LANGUAGES[target]["matmul_epilogue"]
    groups = [group for group in scheduler.fuse(graph, profile, tiles, loads, fuse)
              if not (group.in_template and generates_gemm)]   # computed in their matmul's operand loads
    storage, memo = graph.storage(), {}
    kernels = []
    for k, group in enumerate(groups):
        cost = analyze(group, storage, graph.size_hints, memo)
        matmul_tile = tiles.of(group.matmul) if group.matmul is not None else None
        attention = group.matmul.attention_shape(graph.size_hints) if group.matmul is not None else None
        tiling = plan_kernel(cost, profile, cost.reduction, _sort_row(group))
        loaded = [name for n in group.nodes for name in loads[n.name]] + [
            name for n in sorted(group.dequantized) for name in loads[n]]
        kernels.append(KernelPlan(f"kernel{k}", group, tuple(loaded), target, cost, tiling, matmul_tile,
                                  attention_tile=plan_attention(attention, profile) if attention else None))
    work = [item if isinstance(item, KernelPlan)
            else ExternPlan(item, tiles.of(item), reason=_library_reason(item, profile, tiles, graph.size_hints))
            for item in scheduler.execution_order(graph, kernels)]
    if estimate:
        work = [dataclasses.replace(item, estimate=e) for item, e in zip(work, estimate_steps(graph, work, profile))]
    steps = scheduler.plan_memory(graph, work, loads)
    return Plan(tuple(steps), peak_memory(graph, steps, profile) if estimate else None, notes,
                dtype_debt(work, profile, graph.size_hints))


def _library_reason(call, profile, tiles, hints: dict) -> str:
    """Why an extern call is a library call ("" for a fallback): the cost model preferred the
    library the profile declares over our template (``gemm_choice``: a matmul, a grouped GEMM,
    a convolution or an attention our kernels compute), or the profile declares a library for
    the call's family and nothing of ours is priced against it (other grouped GEMMs,
    convolutions and attentions), or
    the target's renderer has no GEMM (the host)."""
    if call.kind != "extern":
        return ""
    priced = call.is_matmul or (call.op == GROUPED_MATMUL and not grouped_mm_problem(call.args, call.kwargs))
    if priced and profile.target.matmul_epilogue and libraries(call, profile):
        return choose(call, tiles, profile, hints).reason
    attention = choose_attention(call, profile, hints) if call.op in ATTENTIONS and profile.target.attention else None
    if attention is not None:
        return attention.reason
    family = next((getattr(profile.target, name) for ops, name in _FAMILIES if call.op in ops), None)
    if family:
        return f"library call: {', '.join(family)}, declared by the profile"
    return "library call: the target's code generator has no GEMM" if call.op in MATMULS else ""


# an extern call's op family → the profile's libraries for it (``Target``)
_FAMILIES = ((MATMULS | {GROUPED_MATMUL, PACKED_LINEAR}, "blas"), (ATTENTIONS | DEVICE_ATTENTION_CALLS, "attention"),
             ({torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default} | FUSED_CONVOLUTIONS,
              "convolution"))


def _sort_row(group):
    """The length of the row the group sorts (an ``ir.Sort``), or None."""
    return next((node.data.reduction_ranges[0] for node in group.nodes if isinstance(node.data, Sort)), None)
