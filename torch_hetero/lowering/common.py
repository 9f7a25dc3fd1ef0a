"""Helpers shared by lowerings: broadcasting, dtype promotion, building Pointwise nodes."""
from __future__ import annotations

import operator
from typing import Callable, Sequence

import sympy
import torch

from .. import ir, symbolic
from ..virtualized import current_graph, current_origin, ops

Scalar = (bool, int, float, sympy.Expr)


def is_tensor(value) -> bool:
    return isinstance(value, ir.TensorValue)


# the ATen reshapes an FX graph may hold (what the graph rewrites look through)
RESHAPES = (torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default, torch.ops.aten.reshape.default)


def is_call(node, *targets) -> bool:
    """Is ``node`` an FX node calling one of ``targets`` (the graph rewrites before lowering)?"""
    return isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target in targets


def meta_val():
    """The FakeTensor (or tuple of them) the node being lowered produces."""
    return current_graph().current_node.meta["val"]


def output_read(position: int) -> bool:
    """Does anything read output ``position`` of the (multi-output) node being lowered?  An
    unread one (max.dim's indices when only the values are used) is not computed."""
    node = current_graph().current_node
    return any(user.target is operator.getitem and user.args[1] == position and user.users for user in node.users)


def is_one(size) -> bool:
    """Is this dim 1 (so it broadcasts)?  A symbolic size counts when it is 1 for the example
    inputs: Dynamo guarded on exactly that when it broadcast the fake tensors."""
    size = sympy.sympify(size)
    if size.is_number:
        return size == 1
    hints = current_graph().size_hints
    value = size.subs(hints)
    return bool(value.is_number and value == 1)


def broadcast_shapes(*shapes) -> list:
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        size = sympy.Integer(1)
        for shape in shapes:
            pos = axis - (ndim - len(shape))
            if pos >= 0 and not is_one(shape[pos]):
                size = shape[pos]
        out.append(size)
    return out


# A lazily computed input this costly is realized before a broadcast would recompute it for
# every copy (rotary embeddings' sin/cos, broadcast over batch and heads)
REPEATED_MIN_OPS = 2


def _repeats(own, shape) -> bool:
    """Whether broadcasting a tensor of size ``own`` to ``shape`` repeats it along a dim
    outside one it varies along: recomputed per copy.  (Repeats along trailing dims only — a
    row statistic across its row — are loop-invariant in the inner loop: the C++ compiler
    hoists them.)"""
    lead = len(shape) - len(own)
    broadcast = [not is_one(s) for s in shape[:lead]] + [is_one(a) and not is_one(b) for a, b in zip(own, shape[lead:])]
    varies = [False] * lead + [not is_one(a) for a in own]
    return any(b and any(varies[i + 1:]) for i, b in enumerate(broadcast))


def broadcast_loader(value: ir.TensorValue, shape) -> Callable:
    """Loader of ``value`` indexed in the (larger) broadcast ``shape``."""
    inner = value.make_loader()
    own = value.get_size()
    lead = len(shape) - len(own)

    zero = [is_one(size) for size in own]

    def load(index):
        return inner([sympy.Integer(0) if broadcast else idx for idx, broadcast in zip(index[lead:], zero)])
    return load


def scalar_loader(value, dtype) -> Callable:
    if isinstance(value, sympy.Expr) and not value.is_number:
        return lambda index: ops.index_expr(value, dtype)
    if dtype.is_floating_point or dtype == torch.bool or isinstance(value, (bool, float)):
        return lambda index: ops.constant(value, dtype)
    return lambda index: ops.constant(wrap_integer(int(value), dtype), dtype)


def wrap_integer(value: int, dtype: torch.dtype) -> int:
    """``value`` as ``dtype`` holds it, wrapped around as eager casts a scalar to a tensor's
    integer dtype (a uint8 tensor % -3 takes the remainder by 253, an int8 one // 300 divides by 44)."""
    info = torch.iinfo(dtype)
    span = info.max - info.min + 1
    return (value - info.min) % span + info.min


def promote(*args) -> torch.dtype:
    """torch's type promotion over tensor values and Python scalars."""
    dummies = []
    for arg in args:
        if is_tensor(arg):
            dummies.append(torch.empty([0] * min(arg.dim(), 1), dtype=arg.get_dtype()))
        elif isinstance(arg, sympy.Expr):
            dummies.append(1 if arg.is_integer else 1.0)
        elif arg is not None:
            dummies.append(arg)
    return torch.result_type(*dummies) if len(dummies) > 1 else (
        dummies[0].dtype if isinstance(dummies[0], torch.Tensor) else torch.tensor(dummies[0]).dtype)


# What a transcendental (``ops_protocol.TRANSCENDENTAL``: exp, erf, tanh, …) counts as in
# ``op_count``: a GELU shared by several kernels is computed once (a softmax's exp(x - max), read twice inside one kernel, stays inline).
TRANSCENDENTAL_OPS = 2


def make_pointwise(fn: Callable, inputs: Sequence, compute_dtype: torch.dtype,
                   out_dtype: torch.dtype | None = None, uncast: Sequence[int] = (), own_ops: int = 1) -> ir.Lazy:
    """Elementwise ``fn`` over broadcast ``inputs`` (tensor values or scalars), each converted
    to ``compute_dtype`` first except those at positions ``uncast`` (a condition stays bool);
    the result is cast to ``out_dtype`` if given.  ``own_ops``: what ``fn`` counts as in
    ``op_count`` (simple ops; TRANSCENDENTAL_OPS per transcendental)."""
    shape = broadcast_shapes(*[x.get_size() for x in inputs if is_tensor(x)])
    loaders = []
    for position, x in enumerate(inputs):
        if is_tensor(x):
            if ir.op_count(x) >= REPEATED_MIN_OPS and _repeats(x.get_size(), shape):
                x = current_graph().realize(x)   # computed once, not once per broadcast copy
            load = broadcast_loader(x, shape)
            if x.get_dtype() != compute_dtype and position not in uncast:
                load = _cast(load, compute_dtype)
            loaders.append(load)
        else:
            loaders.append(scalar_loader(x, compute_dtype))

    def inner(index):
        result = fn(*[load(index) for load in loaders])
        if out_dtype is not None and out_dtype != compute_dtype:
            result = ops.to_dtype(result, out_dtype)
        return result

    count = own_ops + sum(ir.op_count(x) for x in inputs if is_tensor(x))
    return new_pointwise(inner, shape, out_dtype or compute_dtype, count)


def new_pointwise(inner: Callable, shape, dtype: torch.dtype, op_count: int = 1) -> ir.Lazy:
    graph = current_graph()
    return ir.Lazy(ir.Pointwise(dtype, tuple(shape), inner, current_origin(), op_count), graph)


def _cast(load, dtype):
    return lambda index: ops.to_dtype(load(index), dtype)


def size_of(meta) -> list:
    return [symbolic.sym(s) for s in meta.shape]


def canonical_dim(dim: int, ndim: int) -> int:
    return dim + max(ndim, 1) if dim < 0 else dim
