"""GraphLowering: walks an ATen FX graph, calls the lowering of each node, and records the
realized buffers and extern calls in execution order — the input to the scheduler."""
from __future__ import annotations

import collections
import logging
import operator
import re
import threading
import warnings
from typing import Any, Optional

import sympy
import torch
import torch.fx

from . import ir, symbolic
from .device_models.target import Target
from .dtypes import STORAGE_CTYPE, TL_DTYPE
from .errors import FallbackWarning, HeteroCompileError
from .ir import ExternCall
from .lowering import LOWERINGS
from .printer import pexpr
from .virtualized import lowering_graph, lowering_origin

# Float scalars computed from sizes (e.g. 1 / (n - 1) in var's backward) are evaluated by the
# wrapper in Python and passed to kernels as ``double`` arguments named fsym<N>.
SCALAR_OPS = {torch.sym_float: "float({0})", operator.add: "{0} + {1}", operator.sub: "{0} - {1}",
              operator.mul: "{0} * {1}", operator.truediv: "{0} / {1}", operator.neg: "-{0}",
              operator.pow: "{0} ** {1}", operator.floordiv: "{0} // {1}"}

# Pointwise values are inlined into their consumers unless they grow past these sizes.
MAX_INLINE_OPS = 64          # any value with more inlined ops than this is written to memory
MAX_SHARED_INLINE_OPS = 4    # ... and one with several consumers above this


# The dtypes both code generators handle (a Triton target's plan may also run as host C++).  An
# op that reads or makes a value of any other dtype (complex, float8, uint16/32/64) runs as a
# per-op ATen fallback, so that the rest of its graph still compiles.
GENERATED_DTYPES = frozenset(STORAGE_CTYPE) & frozenset(TL_DTYPE)

log = logging.getLogger(__name__)
# (op, profile) pairs already warned about: a fallback is named once per process, not per graph or call
_warned_fallbacks: set = set()
_warned_lock = threading.Lock()


class GraphLowering:
    def __init__(self, gm: torch.fx.GraphModule, target: Target, profile_name: str = "cpu",
                 strict: bool = False):
        self.gm = gm
        self.target = target                # the target's capabilities: what lowerings may use
        self.profile_name = profile_name    # for the messages about fallbacks
        self.strict = strict                # a fallback raises instead of running ATen
        self.placeholders: list = []        # (kind, value, meta) per graph input
        self.constants: dict[str, torch.Tensor] = {}
        self.nodes: list = []               # ComputedBuffer | ExternCall, in execution order
        self.outputs: list = []
        self.fallback_counts: collections.Counter = collections.Counter()
        self.fallback_notes: dict = {}      # op → what its first fallback's warning said
        self.scalar_defs: list = []         # (fsym name, Python expression), in order
        self.size_hints: dict = {}          # size symbol → its value in the example inputs
        self.current_node: Optional[torch.fx.Node] = None
        self._buffer_count = 0

    # ------------------------------------------------------------------ driving
    def run(self) -> "GraphLowering":
        env: dict[torch.fx.Node, Any] = {}
        with lowering_graph(self):
            for node in self.gm.graph.nodes:
                self.current_node = node
                args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: env[n])
                if node.op == "placeholder":
                    env[node] = self._placeholder(node)
                elif node.op == "get_attr":
                    env[node] = self._constant(node)
                elif node.op == "call_function":
                    with lowering_origin(op_name(node.target)):
                        env[node] = self._call(node, args, kwargs)
                    self._maybe_realize(node, env[node])
                elif node.op == "output":
                    self.outputs = [self.in_eager_layout(value, meta)
                                    for value, meta in zip(args[0], _output_metas(node))]
                else:
                    raise NotImplementedError(f"FX node kind {node.op}")
        self.current_node = None
        return self

    def _placeholder(self, node):
        meta = node.meta.get("val")
        self._record_hints(meta)
        if isinstance(meta, torch.Tensor):
            buffer = ir.InputBuffer(f"arg{len(self.placeholders)}", _layout_of(meta),
                                    symbolic.sym(meta.storage_offset()))
            self.placeholders.append(("tensor", buffer, meta))
            return ir.StridedValue(buffer)
        if isinstance(meta, torch.SymInt) or isinstance(meta, int):
            expr = symbolic.sym(meta)
            self.placeholders.append(("symint", expr, meta))
            return expr
        if isinstance(meta, torch.SymFloat):
            self.placeholders.append(("other", None, meta))
            return self._define_scalar(f"sym{len(self.placeholders) - 1}")
        self.placeholders.append(("other", None, meta))
        return meta

    def _record_hints(self, meta) -> None:
        sizes = []
        if isinstance(meta, torch.Tensor):
            sizes = list(meta.shape) + list(meta.stride())
        elif isinstance(meta, torch.SymInt):
            sizes = [meta]
        for size in sizes:
            if isinstance(size, torch.SymInt) and size.node.expr.is_Symbol and size.node.has_hint():
                self.size_hints[size.node.expr] = int(size.node.hint)

    def _constant(self, node):
        value = getattr(self.gm, node.target)
        name = f"const_{len(self.constants)}"
        self.constants[name] = value
        if value.is_mkldnn:   # a prepacked weight: opaque, only its library reads it (planning.host_library)
            return ir.StridedValue(ir.InputBuffer(name, ir.Layout.contiguous(tuple(value.shape), value.dtype), 0))
        return ir.StridedValue(ir.InputBuffer(name, _layout_of(value), value.storage_offset()))

    def _call(self, node, args, kwargs):
        meta = node.meta.get("val")
        if isinstance(meta, (torch.SymInt, int)) and not isinstance(meta, bool) and node.target is not operator.getitem:
            return symbolic.sym(meta)        # size arithmetic: the ShapeEnv already knows the result
        if isinstance(meta, torch.SymFloat) and node.target in SCALAR_OPS:
            return self._define_scalar(SCALAR_OPS[node.target].format(*[_python_scalar(a) for a in args]))
        if node.target is operator.getitem:
            return args[0][args[1]]
        # an attention library's call passes its random state (uint64) through, untouched
        foreign = _ungenerated_dtypes(args, kwargs, meta) if node.target not in ir.DEVICE_ATTENTION_CALLS else ()
        if foreign:
            return self.fallback(node, args, kwargs, reason=f"no code is generated for {', '.join(foreign)} values")
        lowering = LOWERINGS.get(node.target)
        if lowering is None:
            return self.fallback(node, args, kwargs)
        try:
            return lowering(*args, **kwargs)
        except NotImplementedError as refused:  # this form of the op is not lowered: fall back
            return self.fallback(node, args, kwargs, reason=str(refused))

    def _define_scalar(self, code: str) -> sympy.Symbol:
        name = f"fsym{len(self.scalar_defs)}"
        self.scalar_defs.append((name, code))
        return sympy.Symbol(name, real=True)

    def fallback(self, node, args, kwargs, reason: str = ""):
        """Run ``node``'s op through ATen: counted for reports, named once per process in a
        ``FallbackWarning``; in strict mode, a ``HeteroCompileError`` instead.  ``reason``:
        why the op's lowering refused this form ("" when the op has no lowering)."""
        op, layer = op_name(node.target), module_path(node)
        what = (f"{op}{f' (layer {layer!r})' if layer else ''} has no native lowering on the "
                f"'{self.profile_name}' profile{f': {reason}' if reason else ''}")
        if self.strict:
            raise HeteroCompileError(f"{what}. Strict mode raises on any fallback: compile without strict "
                                     "to run it through ATen (a per-op fallback).")
        log.debug("fallback: %s; it runs through ATen", what)
        self.fallback_notes.setdefault(op, what)
        warn_fallback(op, self.profile_name, what)
        self.fallback_counts[op] += 1
        return self.call_aten(node.target, args, kwargs, kind="fallback")

    def _maybe_realize(self, node, value):
        """Decide whether a pointwise value is computed once into memory or inlined."""
        if not isinstance(value, ir.Lazy):
            return
        if _reaches_output(node):
            # a graph output, or viewed into one (in training, an activation saved for backward),
            # is computed here, in eager's layout, fused with its neighbours while its inputs are
            # in cache; left to the output node, all of them formed one kernel at the end
            self.in_eager_layout(value, node.meta.get("val"))
            return
        users = _readers(node)
        if value.op_count > MAX_INLINE_OPS or (users > 1 and value.op_count > MAX_SHARED_INLINE_OPS):
            value.realize(_channels_last_layout(node.meta.get("val")))

    # ------------------------------------------------------------------ building
    def new_buffer_name(self) -> str:
        self._buffer_count += 1
        return f"buf{self._buffer_count - 1}"

    def add_computed(self, data, layout: Optional[ir.Layout] = None) -> ir.StridedValue:
        layout = layout or ir.Layout.contiguous(data.ranges, data.dtype)
        buffer = ir.ComputedBuffer(self.new_buffer_name(), layout, ir.in_memory_order(data, layout))
        self.nodes.append(buffer)
        return ir.StridedValue(buffer)

    def realize(self, value, layout: Optional[ir.Layout] = None) -> ir.StridedValue:
        """``value`` as a stride view of memory, copying it into a new buffer if it is not one."""
        strided = ir.as_strided(value)
        if strided is not None:
            return strided
        if isinstance(value, ir.Lazy):
            return value.realize(layout)
        loader = value.make_loader()
        copy = ir.Pointwise(value.get_dtype(), tuple(value.get_size()), loader)
        return self.add_computed(copy, layout)

    def call_aten(self, op, args, kwargs, kind: str, device_op: str = "", note: str = "",
                  output: Optional[int] = None, gemm=None, dequantized=None):
        """An ATen call on realized inputs in eager's layouts: ATen picks its outputs' strides
        from its inputs' (attention keeps the query's order), and the outputs are declared
        with the strides the traced metadata gives them.  ``output``: the one output a call
        split per output computes (the others None); ``gemm``: (realized args, kwargs, outputs) → the
        ``ir.GemmOperands`` the target generates the call as; ``dequantized``: realized args → its
        ``ir.Dequantized`` operands."""
        node = self.current_node
        args, kwargs = _map_with_metas((args, kwargs), (node.args, node.kwargs), self.in_eager_layout)
        meta = self.current_node.meta["val"]
        metas = list(meta) if isinstance(meta, (tuple, list)) else [meta]
        returns = getattr(getattr(op, "_schema", None), "returns", [])
        fresh = not any(r.alias_info is not None for r in returns)
        outputs = [ir.ExternBuffer(self.new_buffer_name(), _layout_of(m), fresh)
                   if isinstance(m, torch.Tensor) and output in (None, position) else None
                   for position, m in enumerate(metas)]
        self.nodes.append(ExternCall(op, args, kwargs, outputs, kind, isinstance(meta, (tuple, list)),
                                     module_path(node), device_op, note, gemm(args, kwargs, outputs) if gemm else None,
                                     dequantized(args) if dequantized else ()))
        values = [ir.StridedValue(b) if b is not None else None for b in outputs]
        return tuple(values) if isinstance(meta, (tuple, list)) else values[0]

    def in_eager_layout(self, value, meta):
        """``value`` realized in eager's layout when that layout is non-overlapping (else as it
        is): AOT's backward graphs read saved tensors by the strides eager would have given
        them, and ATen calls derive their outputs' strides from their inputs'."""
        if isinstance(value, ir.TensorValue):
            layout = _layout_of(meta) if isinstance(meta, torch.Tensor) and _non_overlapping(meta) else None
            if layout is not None and not self._same_sizes(layout.size, value.get_size()):
                layout = None
            strided = ir.as_strided(value)
            if layout is not None and strided is not None and not _same_strides(strided.layout, layout):
                value = ir.Lazy(ir.Pointwise(layout.dtype, tuple(layout.size), strided.make_loader()), self)
            return self.realize(value, layout)
        return value

    def _same_sizes(self, traced, computed) -> bool:
        """The traced sizes and the IR's, which may spell a size differently (``(s*s)//s``):
        equal where they simplify alike or take the same value at the example inputs' sizes."""
        return len(traced) == len(computed) and all(
            sympy.expand(a - b) == 0 or sympy.sympify(a - b).subs(self.size_hints) == 0
            for a, b in zip(traced, computed))

    def storage(self) -> dict:
        """Buffer name → (elements of storage, dtype) for every buffer the graph knows."""
        buffers = [value for kind, value, _ in self.placeholders if kind == "tensor"]
        for node in self.nodes:
            buffers += [node] if isinstance(node, ir.ComputedBuffer) else [b for b in node.outputs if b]
        return {b.name: (b.layout.storage_extent(), b.get_dtype()) for b in buffers}

    def size_symbols(self) -> set:
        symbols = set()
        for kind, value, _ in self.placeholders:
            if kind == "tensor":
                for expr in value.layout.size + value.layout.stride:
                    symbols |= expr.free_symbols
            elif kind == "symint":
                symbols |= value.free_symbols
        return symbols


def _ungenerated_dtypes(args, kwargs, meta) -> list:
    """The dtypes of an op's tensor inputs and outputs that we generate no code for, by name."""
    leaves = torch.utils._pytree.tree_leaves((args, kwargs, meta))
    dtypes = {v.get_dtype() for v in leaves if isinstance(v, ir.TensorValue)}
    dtypes |= {v.dtype for v in leaves if isinstance(v, torch.Tensor)}
    return sorted(str(dtype).removeprefix("torch.") for dtype in dtypes - GENERATED_DTYPES)


def warn_fallback(op: str, profile: str, what: str) -> None:
    """A ``FallbackWarning`` the first time ``op`` falls back on ``profile`` in this process,
    whether its graph is compiled or loaded from AOTAutograd's cache; never again after."""
    with _warned_lock:
        if (op, profile) in _warned_fallbacks:
            return
        _warned_fallbacks.add((op, profile))
    warnings.warn(f"torch_hetero: {what}; it runs through ATen (warned once per process; "
                  "options={'strict': True} raises instead)", FallbackWarning, stacklevel=2)


def _python_scalar(value) -> str:
    if isinstance(value, sympy.Expr):
        return f"({pexpr(value)})"
    if isinstance(value, (int, float)):
        return repr(value)
    raise NotImplementedError(f"scalar argument {value!r}")


def _reaches_output(node: torch.fx.Node) -> bool:
    """Is ``node``'s value a graph output, itself or through views?"""
    return any(user.op == "output" or (getattr(user.target, "is_view", False) and _reaches_output(user))
               for user in node.users)


def _readers(node: torch.fx.Node) -> int:
    """How many nodes read ``node``'s value, counting the readers of its views instead of the
    views: a GELU backward viewed once, then read by three matmul and bias-gradient kernels,
    is shared by three."""
    count = 0
    for user in node.users:
        count += _readers(user) if getattr(user.target, "is_view", False) else 1
    return count


def module_path(node: torch.fx.Node) -> str:
    """The qualified name of the innermost module a node was traced in ("h.0.mlp.c_fc"), from
    Dynamo's ``nn_module_stack`` (kept by AOTAutograd); "" at the top level."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    # "L['self'].h[0].mlp" / "L['self'].h.0.mlp" → "h.0.mlp"
    path = re.sub(r"^L\['[^']*'\]\.?", "", path)
    return re.sub(r"\[(\d+)\]", r".\1", path).replace("._modules['", ".").replace("']", "")


def op_name(target) -> str:
    name = getattr(target, "_name", None) or getattr(target, "__name__", str(target))
    # "aten::add.Tensor" -> "aten.add"
    return name.split(".")[0].replace("::", ".")


def _layout_of(tensor: torch.Tensor) -> ir.Layout:
    return ir.Layout(tuple(symbolic.sym(s) for s in tensor.shape),
                     tuple(symbolic.sym(s) for s in tensor.stride()), tensor.dtype)


def _same_strides(a: ir.Layout, b: ir.Layout) -> bool:
    """Equal sizes and equal strides wherever the size is not 1 (those strides are arbitrary)."""
    return len(a.size) == len(b.size) and all(
        sympy.expand(sa - sb) == 0 and (sympy.expand(ta - tb) == 0 or sa == 1)
        for sa, sb, ta, tb in zip(a.size, b.size, a.stride, b.stride))


def _non_overlapping(tensor: torch.Tensor) -> bool:
    """Each element at its own address (gaps allowed: a view of a larger tensor).  An output
    keeps such a layout from eager: backward graphs address saved tensors by their strides."""
    layout = _layout_of(tensor)
    if layout.is_contiguous():
        return True
    if not all(e.is_number for e in layout.size + layout.stride):   # the fake tensor's own (symbolic) check first
        return (tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last)) \
            or _dense_permutation(layout)
    expected = 1
    for stride, size in sorted((int(st), int(s)) for s, st in zip(layout.size, layout.stride) if s != 1):
        if stride < expected:
            return False
        expected = stride * size
    return True


def _dense_permutation(layout: ir.Layout) -> bool:
    """Symbolic sizes: whether the layout is dense in some order of its dims (channels-last,
    a permuted contiguous tensor), each stride provably the product of the sizes inside it."""
    left = [(size, stride) for size, stride in zip(layout.size, layout.stride) if size != 1]
    expected = sympy.Integer(1)
    while left:
        inner = next((dim for dim in left if sympy.expand(dim[1] - expected) == 0), None)
        if inner is None:
            return False
        left.remove(inner)
        expected = inner[0] * inner[1]
    return True


def _channels_last_layout(meta) -> Optional[ir.Layout]:
    """The layout of a traced channels-last value, else None (contiguous)."""
    return _layout_of(meta) if ir.is_channels_last(meta) else None


def _output_metas(node):
    return [a.meta.get("val") if isinstance(a, torch.fx.Node) else a for a in node.args[0]]


def _map_with_metas(tree, nodes, fn):
    """``fn(value, meta)`` over the tensor values of ``tree``, ``meta`` the traced value of the
    FX node at the same place in ``nodes`` (None where there is none)."""
    if isinstance(tree, ir.TensorValue):
        return fn(tree, nodes.meta.get("val") if isinstance(nodes, torch.fx.Node) else None)
    if isinstance(tree, (list, tuple)):
        nodes = nodes if isinstance(nodes, (list, tuple)) and len(nodes) == len(tree) else [None] * len(tree)
        mapped = [_map_with_metas(x, n, fn) for x, n in zip(tree, nodes)]
        return type(tree)(mapped) if isinstance(tree, tuple) else mapped
    if isinstance(tree, dict):
        nodes = nodes if isinstance(nodes, dict) else {}
        return {k: _map_with_metas(v, nodes.get(k), fn) for k, v in tree.items()}
    return tree

