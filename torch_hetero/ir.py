"""The loop-level IR.

A tensor value during lowering is one of:

* :class:`StridedValue` — a realized buffer read through sizes/strides/offset (graph inputs,
  kernel outputs, extern results, and every view that stays a pure stride change);
* :class:`Lazy` — a :class:`Pointwise` not yet written to memory; consumers inline its inner
  function, or :meth:`Lazy.realize` turns it into a :class:`ComputedBuffer`;
* :class:`IndexView` — any other view: a pure remapping of the index into its base.

Every value offers ``make_loader()``: a function from a list of sympy indices to an ``ops``
value.  Pointwise and Reduction nodes are defined by such inner functions, so the same IR
is rendered to C++ or Triton by swapping the ``ops`` handler (see ``virtualized``)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import sympy
import torch

from . import symbolic
from .virtualized import ops, record_origins

Index = Sequence[sympy.Expr]


@dataclasses.dataclass(frozen=True)
class Layout:
    size: tuple
    stride: tuple
    dtype: torch.dtype
    offset: sympy.Expr = sympy.Integer(0)

    @staticmethod
    def contiguous(size, dtype) -> "Layout":
        size = tuple(size)
        return Layout(size, tuple(symbolic.contiguous_strides(size)), dtype)

    @staticmethod
    def channels_last(size, dtype) -> "Layout":
        """NHWC strides for an NCHW-shaped 4-d ``size``."""
        n, c, h, w = size
        return Layout(tuple(size), (h * w * c, sympy.Integer(1), w * c, c), dtype)

    def index(self, index: Index) -> sympy.Expr:
        expr = self.offset
        for idx, size, stride in zip(index, self.size, self.stride):
            if size != 1:
                expr = expr + idx * stride
        return expr

    def numel(self) -> sympy.Expr:
        return symbolic.product(self.size)

    def is_contiguous(self) -> bool:
        expected = symbolic.contiguous_strides(self.size)
        return self.offset == 0 and all(
            size == 1 or stride == want for size, stride, want in zip(self.size, self.stride, expected))

    def storage_extent(self) -> sympy.Expr:
        """Elements of storage this layout may touch (what an owning buffer must allocate)."""
        if any(size == 0 for size in self.size):
            return sympy.Integer(0)
        return self.offset + 1 + sum((size - 1) * stride for size, stride in zip(self.size, self.stride))


def is_channels_last(meta) -> bool:
    """Is the traced value a channels-last 4-d tensor (``planning.host_library`` planned the
    graph so: its convolutions read it that way)?"""
    return isinstance(meta, torch.Tensor) and meta.dim() == 4 and not meta.is_contiguous() \
        and meta.is_contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------- buffers
class Buffer:
    """A named piece of memory the generated wrapper owns or receives."""

    owns_storage = False  # does storage offset 0 sit at this buffer's data pointer?

    def __init__(self, name: str, layout: Layout):
        self.name = name
        self.layout = layout

    def get_dtype(self):
        return self.layout.dtype


class InputBuffer(Buffer):
    """A tensor argument of the graph (or a constant attribute of the GraphModule).
    ``storage_offset``: its offset in its storage when traced.  The generated code sees only
    its data pointer, so absolute storage offsets (``as_strided``) are taken relative to it,
    as Inductor does: Dynamo does not guard on storage offsets."""

    def __init__(self, name: str, layout: Layout, storage_offset=0):
        super().__init__(name, layout)
        self.storage_offset = storage_offset


class ComputedBuffer(Buffer):
    """Written by one generated kernel from a Pointwise or Reduction node."""

    owns_storage = True

    def __init__(self, name: str, layout: Layout, data: "Pointwise | Reduction"):
        super().__init__(name, layout)
        self.data = data


class ExternBuffer(Buffer):
    """Produced by an ATen call in the wrapper (extern matmul/conv, or a fallback op)."""

    def __init__(self, name: str, layout: Layout, owns_storage: bool):
        super().__init__(name, layout)
        self.owns_storage = owns_storage  # False when the op may return a view of an input


# ---------------------------------------------------------------------------- node data
@dataclasses.dataclass
class Pointwise:
    dtype: torch.dtype
    ranges: tuple
    inner_fn: Callable[[Index], object]
    origins: tuple = ()
    op_count: int = 1
    order: Optional[tuple] = None   # ranges are the buffer's dims in this order (None: as they are)

    def logical(self, index: Index) -> Index:
        """The buffer's index for an index of ``ranges``."""
        if self.order is None:
            return index
        logical = [None] * len(index)
        for position, dim in enumerate(self.order):
            logical[dim] = index[position]
        return logical

    def value_at(self, logical: Index):
        """The value of the buffer's element at ``logical`` (its own dims' index)."""
        return self.inner_fn(logical if self.order is None else [logical[d] for d in self.order])

    def store_to(self, buffer: ComputedBuffer, index: Index):
        return ops.store(buffer.name, buffer.layout.index(self.logical(index)), self.inner_fn(index),
                         buffer.get_dtype())


def in_memory_order(data, layout: "Layout"):
    """A Pointwise iterating ``layout``'s dims from the largest stride to the smallest: the
    loops of a kernel follow its ranges, so a transposed output (an extern's input in eager's
    layout, say) is then written along memory, not across it."""
    if type(data) is not Pointwise or data.order is not None or \
            not all(e.is_number for e in tuple(layout.size) + tuple(layout.stride)):
        return data
    order = tuple(sorted(range(len(layout.size)),
                         key=lambda d: float("-inf") if layout.size[d] == 1 else -int(layout.stride[d])))
    if order == tuple(range(len(order))):
        return data
    permuted = Pointwise(data.dtype, tuple(data.ranges[d] for d in order), None, data.origins, data.op_count, order)
    permuted.inner_fn = lambda index: data.inner_fn(permuted.logical(index))
    return permuted


@dataclasses.dataclass
class Scatter(Pointwise):
    """For each index of ``ranges`` (the source's), ``inner_fn(index)`` is written at
    ``output_index(index)`` of the buffer — which takes over ``base``'s memory in place, a
    fresh copy of the tensor scattered into.  ``mode`` None overwrites (a duplicate index: any
    one write wins); sum, prod, amax or amin combine with what is there (index_put accumulate,
    scatter_add, scatter_reduce)."""

    base: str = ""
    output_index: Callable[[Index], Index] = None
    mode: Optional[str] = None

    def store_to(self, buffer: ComputedBuffer, index: Index):
        return ops.store(buffer.name, buffer.layout.index(self.output_index(index)), self.inner_fn(index),
                         buffer.get_dtype(), self.mode)


@dataclasses.dataclass
class Reduction:
    """``out[index] = reduce(inner_fn(index, rindex) for rindex in reduction_ranges)``."""

    dtype: torch.dtype
    ranges: tuple
    reduction_ranges: tuple
    reduction_type: str  # sum, prod, max, min, argmax, argmin, any, all
    inner_fn: Callable[[Index, Index], object]
    src_dtype: torch.dtype
    origins: tuple = ()
    epilogue: Optional[Callable[[object], object]] = None  # applied to the result before storing


@dataclasses.dataclass
class Scan(Reduction):
    """A prefix reduction (cumsum, cumprod: ``reduction_type`` sum or prod) along output dim
    ``dim``: the loops run over the other dims (``ranges``) and, inside, along ``dim``
    (``reduction_ranges``), storing every prefix.  The buffer has the full output shape."""

    dim: int = 0

    def full_index(self, index: Index, rindex: Index) -> Index:
        return list(index[:self.dim]) + list(rindex) + list(index[self.dim:])


@dataclasses.dataclass
class Sort(Scan):
    """The sorting permutation (int64 indices) along output dim ``dim``, per row of the other
    dims: stable, NaNs after every number (before them when ``descending``), as eager."""

    descending: bool = False


# ---------------------------------------------------------------------------- values
class TensorValue:
    def get_size(self) -> list:
        raise NotImplementedError

    def get_dtype(self) -> torch.dtype:
        raise NotImplementedError

    def make_loader(self) -> Callable[[Index], object]:
        raise NotImplementedError

    def dim(self) -> int:
        return len(self.get_size())


class StridedValue(TensorValue):
    def __init__(self, buffer: Buffer, layout: Optional[Layout] = None):
        self.buffer = buffer
        self.layout = layout or buffer.layout

    def get_size(self):
        return list(self.layout.size)

    def get_dtype(self):
        return self.layout.dtype

    def make_loader(self):
        name, layout = self.buffer.name, self.layout

        def load(index):
            return ops.load(name, layout.index(index), layout.dtype)
        return load

    def is_whole_buffer(self) -> bool:
        return self.layout == self.buffer.layout


class Lazy(TensorValue):
    """A Pointwise that consumers inline until something forces it into memory."""

    def __init__(self, data: Pointwise, graph):
        self.data = data
        self.graph = graph
        self.realized: Optional[StridedValue] = None

    def get_size(self):
        return list(self.data.ranges)

    def get_dtype(self):
        return self.data.dtype

    def realize(self, layout: Optional[Layout] = None) -> StridedValue:
        """Write the value to a new buffer (``layout`` defaults to contiguous), once."""
        if self.realized is None:
            self.realized = self.graph.add_computed(self.data, layout)
        return self.realized

    def make_loader(self):
        if self.realized is not None:
            return self.realized.make_loader()
        data = self.data

        def load(index):
            record_origins(data.origins)
            return data.inner_fn(index)
        return load

    @property
    def op_count(self) -> int:
        return 0 if self.realized is not None else self.data.op_count


class IndexView(TensorValue):
    """``out[index] = base[reindex(index)]`` for views that are not a stride change of a
    realized buffer (views of lazy values, or reshapes that need div/mod)."""

    def __init__(self, base: TensorValue, size, reindex: Callable[[Index], Index], origins=()):
        self.base = base
        self.size = list(size)
        self.reindex = reindex
        self.origins = origins

    def get_size(self):
        return self.size

    def get_dtype(self):
        return self.base.get_dtype()

    def make_loader(self):
        inner, reindex, origins = self.base.make_loader(), self.reindex, self.origins

        def load(index):
            record_origins(origins)
            return inner(reindex(index))
        return load


# What reading a buffer across its memory order (a transposed view: a cache line per element)
# counts as in ``op_count``: a value inlining such a read is worth realizing when it is shared.
STRIDED_READ_OPS = 4


def op_count(value: TensorValue) -> int:
    """What a consumer pays again each time it inlines ``value``, in simple ops: the pointwise
    ops it recomputes, or STRIDED_READ_OPS for a buffer read across its memory order."""
    while isinstance(value, IndexView):
        value = value.base
    if isinstance(value, Lazy):
        return value.op_count
    if isinstance(value, StridedValue):
        inner = [stride for size, stride in zip(value.layout.size, value.layout.stride) if size != 1]
        return STRIDED_READ_OPS if inner and inner[-1] != 1 else 0
    return 0


def as_strided(value: TensorValue) -> Optional[StridedValue]:
    """``value`` as a stride view of a realized buffer, or None when it is not one."""
    if isinstance(value, StridedValue):
        return value
    if isinstance(value, Lazy):
        return value.realized
    if isinstance(value, IndexView):
        base = as_strided(value.base)
        if base is None:
            return None
        variables = symbolic.index_symbols("v", len(value.size))
        form = symbolic.linear_form(base.layout.index(value.reindex(list(variables))), variables)
        if form is None:
            return None
        offset, strides = form
        if any(sympy.sympify(s).is_negative for s in strides):  # flip: torch has no negative strides
            return None
        return StridedValue(base.buffer, Layout(tuple(value.size), tuple(strides), base.get_dtype(), offset))
    return None


# the ATen matrix products: extern calls with a tile (tiling.plan_matmul) and, where the target
# generates its GEMM, an epilogue (fusion)
MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}
# One GEMM per group (an MoE's experts) in one call; no epilogue joins it
GROUPED_MATMUL = torch.ops.aten._grouped_mm.default
SCALED_MATMUL = torch.ops.aten._scaled_mm.default
INT8_WEIGHT_MATMUL = torch.ops.aten._weight_int8pack_mm.default
INT8_MATMUL = torch.ops.aten._int_mm.default
INT4_WEIGHT_MATMUL_CPU = torch.ops.aten._weight_int4pack_mm_for_cpu.default   # the host's library only
QUANTIZED_MATMULS = (SCALED_MATMUL, INT8_WEIGHT_MATMUL, INT8_MATMUL)   # lowering/quantized_matmul.py
# matmuls whose generated operands are converted as they are loaded (planning.tiling sizes them apart)
CONVERTED_OPERANDS = (SCALED_MATMUL, INT8_WEIGHT_MATMUL)
# the fused attention ops AOTAutograd keeps whole (SDPA on CPU inputs): a library call where the
# profile declares an attention library, else our generated flash attention (``AttentionShape``)
ATTENTIONS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
              torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward.default}
# SDPA traced on GPU inputs: the kernel PyTorch's dispatcher chose (flash, memory-efficient or
# cuDNN), its positions of (attn mask, dropout, is_causal); a library call where the profile
# declares an attention library, else rewritten as ``ATTENTIONS`` where it can be
# (``lowering.attention_pattern``)
DEVICE_ATTENTIONS = {torch.ops.aten._scaled_dot_product_flash_attention.default: (None, 3, 4),
                     torch.ops.aten._scaled_dot_product_efficient_attention.default: (3, 5, 6),
                     torch.ops.aten._scaled_dot_product_cudnn_attention.default: (3, 5, 6)}
DEVICE_ATTENTION_BACKWARDS = {torch.ops.aten._scaled_dot_product_flash_attention_backward.default,
                              torch.ops.aten._scaled_dot_product_efficient_attention_backward.default,
                              torch.ops.aten._scaled_dot_product_cudnn_attention_backward.default}
DEVICE_ATTENTION_CALLS = set(DEVICE_ATTENTIONS) | DEVICE_ATTENTION_BACKWARDS


@dataclasses.dataclass(frozen=True)
class AttentionShape:
    """What a fused attention call computes, with sizes as the size hints give them: per batch
    and query head, softmax(q @ k^T * scale + mask) @ v over ``heads // kv_heads`` query heads
    per KV head (GQA/MQA)."""
    batch: int
    heads: int
    kv_heads: int
    queries: int       # L
    keys: int          # S
    head_dim: int      # D
    dtype: torch.dtype
    causal: bool
    backward: bool


@dataclasses.dataclass(frozen=True)
class GemmOperands:
    """A generated matmul as ``out[output(g, i, j)] = sum over kk of a(g, i, kk) * b(g, kk, j)``
    for ``g < batch`` (None: not batched), ``i < m``, ``j < n``, ``kk < k``: ``a`` and ``b`` are
    inner functions (index → ``ops`` value, like a loader), so an operand may be computed from
    loads inside the K loop — a convolution's im2col gather with its padding masks — and never
    materialized.  ``output`` is the output buffer's logical index of element (g, i, j);
    ``epilogue`` (g, i, j, accumulator) → the output value before its rounding (a scaled
    matmul's scales and bias), None: the accumulator as it is.  ``column_sums`` c: the sum
    over kk of c × b(g, kk, j) is added to the accumulator before the epilogue (an unsigned A
    fed to ``tl.dot`` as A − c, exactly: ``(a − c) @ b + c × colsum(b) = a @ b``)."""
    batch: Optional[sympy.Expr]
    m: sympy.Expr
    n: sympy.Expr
    k: sympy.Expr
    dtype: torch.dtype      # what the matrix units take (the operands are rounded to it)
    a: Callable
    b: Callable
    output: Callable
    epilogue: Optional[Callable] = None
    column_sums: int = 0


@dataclasses.dataclass(frozen=True)
class Dequantized:
    """A matmul operand in a buffer that one pointwise node computes from narrower data (an
    int8 or fp8 weight converted and scaled): ``load`` (g, row, col) → its element computed from
    that data, so that a generated GEMM may compute its tiles as it loads them and the buffer
    ``name`` is never written.  ``planning.fusion`` decides: only where the template runs the
    call and nothing else reads the buffer."""
    name: str
    operand: str        # "a" or "b": the ``GemmOperands`` loader it stands for
    load: Callable


@dataclasses.dataclass
class ExternCall:
    """An ATen op run by the wrapper on realized tensors: a native extern (matmul, conv) or a
    fallback for an op with no lowering (always correct, always reported)."""
    op: Any
    args: tuple
    kwargs: dict
    outputs: list            # ExternBuffer or None per output
    kind: str                # "extern" | "fallback"
    tuple_result: bool
    layer: str = ""          # the module it came from ("transformer.h.0.mlp"), for reports
    device_op: str = ""      # the op (no overload) that reaches the profile's library on the device,
                             # when the host executor runs another kernel for it ("": ``op`` itself)
    note: str = ""           # why it is this call: for reports and the schedule
    gemm: Optional[GemmOperands] = None   # a call the target generates as a GEMM of these operands
                                          # (a convolution); the host executor still calls ``op``
    dequantized: tuple = ()  # ``Dequantized`` operands its template may compute as it loads them

    @property
    def name(self) -> str:
        return f"{self.device_op}.default" if self.device_op else str(self.op)

    def input_names(self) -> list:
        """Names of the buffers its arguments view, in argument order."""
        names: list = []
        _collect_buffers((self.args, self.kwargs), names)
        return names

    @property
    def result(self) -> "ExternBuffer":
        """The buffer a matmul writes: its one output (a call split per output, a convolution
        backward's gradient, has None at the others)."""
        return next(b for b in self.outputs if b is not None)

    @property
    def is_matmul(self) -> bool:
        """A chosen matmul: an mm/addmm/bmm extern, or a call generated as a GEMM."""
        return self.kind == "extern" and (self.op in MATMULS or self.gemm is not None)

    @property
    def converts_operands(self) -> bool:
        """Its generated operands are converted as they are loaded (``planning.tiling`` sizes
        the tiles of such GEMMs apart)."""
        return self.op in CONVERTED_OPERANDS or bool(self.dequantized)

    def operands(self, computed: frozenset = frozenset()) -> GemmOperands:
        """Its GEMM, each operand in ``computed`` (``Dequantized`` names) computed as it is
        loaded rather than read from its buffer."""
        gemm = self._operands()
        inline = {d.operand: d.load for d in self.dequantized if d.name in computed}
        return dataclasses.replace(gemm, **inline) if inline else gemm

    def _operands(self) -> GemmOperands:
        """The lowering's GEMM (``gemm``), or an mm/addmm/bmm's strided A and B."""
        if self.gemm is not None:
            return self.gemm
        a, b = [t for t in self.args if isinstance(t, StridedValue)][-2:]
        load_a, load_b = a.make_loader(), b.make_loader()
        batched = len(a.layout.size) == 3
        lead = (lambda g: [g]) if batched else (lambda g: [])
        return GemmOperands(a.layout.size[0] if batched else None, a.layout.size[-2], b.layout.size[-1],
                            a.layout.size[-1], a.get_dtype(), lambda g, i, kk: load_a(lead(g) + [i, kk]),
                            lambda g, kk, j: load_b(lead(g) + [kk, j]), lambda g, i, j: lead(g) + [i, j])

    def matmul_shape(self, hints: dict):
        """(batch, m, n, k, dtype) of an mm/addmm/bmm call or a generated GEMM (a grouped one:
        the shape of each group when rows split evenly), else None."""
        if self.op == GROUPED_MATMUL:
            return self._grouped_shape(hints)
        if self.op not in MATMULS and self.gemm is None:
            return self._library_quantized_shape(hints)
        gemm = self.operands()
        batch, m, n, k = (int(sympy.sympify(s).subs(hints)) for s in (gemm.batch or 1, gemm.m, gemm.n, gemm.k))
        return batch, m, n, k, gemm.dtype

    def attention_shape(self, hints: dict) -> "AttentionShape | None":
        """The shape of a fused attention call (``ATTENTIONS``), else None."""
        if self.op not in ATTENTIONS:
            return None
        backward = "backward" in str(self.op)
        q, k = self.args[1:3] if backward else self.args[:2]
        causal = self.args[7] if backward else (self.args[4] if len(self.args) > 4 else False)
        batch, heads, queries, head_dim = [int(sympy.sympify(s).subs(hints)) for s in q.layout.size]
        kv_heads, keys = [int(sympy.sympify(s).subs(hints)) for s in k.layout.size[1:3]]
        return AttentionShape(batch, heads, kv_heads, queries, keys, head_dim, q.get_dtype(), bool(causal), backward)

    def _library_quantized_shape(self, hints: dict):
        """A quantized matmul ATen's CPU kernel runs as the host's library call: its shape and
        the format it multiplies in (fp8 operands converted to float32, int8 and int4 weights
        to the input's format), else None."""
        if self.kind != "extern" or self.op not in QUANTIZED_MATMULS + (INT4_WEIGHT_MATMUL_CPU,):
            return None
        a, b = [t for t in self.args if isinstance(t, StridedValue)][:2]
        m, k = a.layout.size
        n = b.layout.size[1] if self.op in (SCALED_MATMUL, INT8_MATMUL) else b.layout.size[0]
        dtype = {SCALED_MATMUL: torch.float32, INT8_MATMUL: torch.int8}.get(self.op, a.get_dtype())
        return (1, *(int(sympy.sympify(s).subs(hints)) for s in (m, n, k)), dtype)

    def _grouped_shape(self, hints: dict):
        """``_grouped_mm(a, b, offs)``: offs splits a's rows among b's groups (2-d x 3-d, an
        MoE's tokens per expert) or the shared dim among the output's groups (2-d x 2-d, its
        weights' gradient)."""
        a, b, offs = [t for t in self.args if isinstance(t, StridedValue)][:3]
        size = lambda t: [int(sympy.sympify(s).subs(hints)) for s in t.layout.size]  # noqa: E731
        (m, k), groups, n = size(a), size(offs)[0], size(b)[-1]
        if len(b.layout.size) == 3:
            return groups, -(-m // max(groups, 1)), n, k, a.get_dtype()
        return groups, m, n, -(-k // max(groups, 1)), a.get_dtype()


def _collect_buffers(tree, out: list) -> None:
    if isinstance(tree, StridedValue):
        out.append(tree.buffer.name)
    elif isinstance(tree, (list, tuple)):
        for x in tree:
            _collect_buffers(x, out)
    elif isinstance(tree, dict):
        for x in tree.values():
            _collect_buffers(x, out)
