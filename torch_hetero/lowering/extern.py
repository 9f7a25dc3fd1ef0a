"""Ops that call an ATen kernel from the generated wrapper on realized inputs: the matmul
family (the grouped GEMM of MoE experts included), and fused attention where the profile declares a library for it (``Target.attention``;
convolution is in ``convolution.py``).  Unlike fallbacks these are a choice, so the
report lists them apart; without the library the op is the target's debt, not a choice.  On a
target that generates every GEMM (``Target.generates_gemm``: no BLAS library) the planner turns
each matmul call into a generated kernel (``planning.fusion``); one it cannot generate falls back.
Likewise a fused attention call on a target without an attention library becomes our generated
flash attention (``codegen.triton_attention``), forward and backward."""
from __future__ import annotations

import torch

from .. import ir, symbolic
from ..ir import ATTENTIONS, DEVICE_ATTENTION_CALLS, DEVICE_ATTENTIONS
from ..virtualized import current_graph
from .quantized_matmul import dequantized_operands
from .registry import register_lowering

aten = torch.ops.aten

# What the generated GEMM's ``tl.dot`` takes: a target without a BLAS library runs other
# matmuls (integers, float64) as fallbacks, reported as its debt
GEMM_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MATMUL_OPS = (aten.mm, aten.bmm, aten.addmm)
# what our generated attention reads: head dims a tile holds whole (a power-of-two block, >= 16 for tl.dot)
MAX_HEAD_DIM = 256


def _extern(*args, **kwargs):
    graph = current_graph()
    op = graph.current_node.target
    if graph.target.generates_gemm and op.overloadpacket in MATMUL_OPS + (aten._grouped_mm,):
        dtype = graph.current_node.meta["val"].dtype
        if dtype not in GEMM_DTYPES:
            raise NotImplementedError(f"{op}: the target has no BLAS library and its generated GEMM "
                                      f"takes {', '.join(str(d) for d in GEMM_DTYPES)}, not {dtype}")
    dequantized = dequantized_operands if graph.target.matmul_epilogue and op.overloadpacket in MATMUL_OPS else None
    return graph.call_aten(op, args, kwargs, kind="extern", dequantized=dequantized)


@register_lowering(aten._grouped_mm)
def _grouped_mm(*args, **kwargs):
    """One GEMM per group, rows (2-d x 3-d) or the shared dim (2-d x 2-d) split by ``offs``:
    a library call where the profile has a BLAS library, else a generated kernel (fusion)."""
    if current_graph().target.generates_gemm and grouped_mm_problem(args, kwargs):
        raise NotImplementedError(grouped_mm_problem(args, kwargs))
    return _extern(*args, **kwargs)


def grouped_mm_problem(args, kwargs):
    """Why our grouped GEMM cannot compute ``_grouped_mm(*args, **kwargs)``, or None: what the
    lowering refuses without a BLAS library, and what the planner does not price against one."""
    named = dict(zip(("a", "b", "offs", "bias", "out_dtype"), args), **kwargs)
    if named.get("offs") is None or named.get("bias") is not None or len(named["a"].get_size()) != 2:
        return "the generated grouped GEMM takes a 2-d input split by offs, without bias"
    return None


def _attention(*args, **kwargs):
    """The fused CPU kernel stands for the device's library: the call is named by the op that
    reaches that library (``Target.attention_op``), its note says what this executor runs."""
    graph = current_graph()
    op, device_op = graph.current_node.target, graph.target.attention_op
    backward = op.overloadpacket is aten._scaled_dot_product_flash_attention_for_cpu_backward
    if not device_op:
        return _generated_attention(graph, op, args, kwargs, backward)
    device_op += "_backward" if backward else ""
    if device_op == _without_overload(op):
        return graph.call_aten(op, args, kwargs, kind="extern")
    note = (f"{graph.target.attention[0]} on the device; the host executor runs ATen's CPU flash "
            "attention kernel in its place")
    return graph.call_aten(op, args, kwargs, kind="extern", device_op=device_op, note=note)


def _device_attention(*args, **kwargs):
    """SDPA traced on GPU inputs (``ir.DEVICE_ATTENTIONS``): the kernel the dispatcher chose is
    the device's attention library.  Without one, ``attention_pattern`` rewrote what our flash
    attention can compute; what is left (dropout, a training graph's saved statistics) falls back."""
    graph = current_graph()
    if not graph.target.attention:
        raise NotImplementedError("generated attention takes SDPA traced on GPU inputs only without dropout, "
                                  "when only its output is read (an inference graph)")
    op = graph.current_node.target
    mask_at = DEVICE_ATTENTIONS.get(op, (None,))[0]
    if mask_at is not None and len(args) > mask_at and args[mask_at] is not None:
        args = (*args[:mask_at], _aligned_rows(graph, args[mask_at]), *args[mask_at + 1:])
    return graph.call_aten(op, args, kwargs, kind="extern")


MASK_ROW_ALIGNMENT = 16   # elements: ATen's SDPA pads a mask's rows so (memory-efficient, cuDNN kernels)


def _aligned_rows(graph, mask):
    """An attention mask realized with its rows padded to ``MASK_ROW_ALIGNMENT`` elements, as
    eager's SDPA pads it: the memory-efficient kernel refuses strides that are not multiples
    of 16 bytes, which a mask we computed (an expanded one, say) need not have."""
    size = tuple(mask.get_size())
    padded = (*size[:-1], (size[-1] + MASK_ROW_ALIGNMENT - 1) // MASK_ROW_ALIGNMENT * MASK_ROW_ALIGNMENT)
    layout = ir.Layout(size, tuple(symbolic.contiguous_strides(padded)), mask.get_dtype())
    strided = ir.as_strided(mask)
    if strided is not None:  # a buffer or a view of one: copied into the padded rows
        mask = ir.Lazy(ir.Pointwise(layout.dtype, size, strided.make_loader()), graph)
    return graph.realize(mask, layout)


def _generated_attention(graph, op, args, kwargs, backward: bool):
    """Our flash attention (the profile declares no attention library): planned as a kernel of
    its own (``planning.fusion``), named by SDPA rather than by the CPU op it was traced as.
    What the template cannot compute falls back, reported as the target's debt."""
    query = graph.current_node.meta["val"][0] if backward else graph.current_node.args[0].meta["val"]
    head_dim = query.shape[-1]   # symbolic: planned at its hint, checked at each launch
    problem = generated_attention_problem(query.dtype, attention_dropout(args, backward),
                                          head_dim if isinstance(head_dim, int) else head_dim.node.hint)
    if problem:
        raise NotImplementedError(problem)
    name = "aten.scaled_dot_product_attention" + ("_backward" if backward else "")
    return graph.call_aten(op, args, kwargs, kind="extern", device_op=name,
                           note="generated flash attention (the profile declares no attention library)")


def attention_dropout(args, backward: bool) -> float:
    """The dropout probability among a fused attention call's arguments (``ir.ATTENTIONS``)."""
    return args[6] if backward else (args[3] if len(args) > 3 else 0.0)


def generated_attention_problem(dtype, dropout, head_dim: int):
    """Why our flash attention cannot compute a call, or None: what the lowering refuses
    without an attention library, and what the planner does not price against one."""
    if dtype not in GEMM_DTYPES:
        return f"generated attention takes {', '.join(str(d) for d in GEMM_DTYPES)}, not {dtype}"
    if dropout:
        return "generated attention has no dropout"
    if head_dim > MAX_HEAD_DIM:
        return f"generated attention holds a head dim up to {MAX_HEAD_DIM} whole, not {head_dim}"
    return None


def _without_overload(op) -> str:
    """The op's name without its overload: ``aten._foo`` for ``aten._foo.default``."""
    return str(op).rsplit(".", 1)[0]


for _op in MATMUL_OPS:
    register_lowering(_op)(_extern)
for _op in ATTENTIONS:
    register_lowering(_op)(_attention)
for _op in DEVICE_ATTENTION_CALLS:
    register_lowering(_op)(_device_attention)
