"""Renders a kernel (a group of nodes in one loop nest, see ``loop_nest``) as a Triton kernel.

One program handles ``XBLOCK`` iterations of the flattened outer loops; inside it, each node
loops over its inner range in ``RBLOCK`` steps — one step when the plan is one-pass, several
when it is looped — with its loads masked at the edges.  Reductions accumulate a
``[XBLOCK, RBLOCK]`` block and reduce it across the row at the end; ``local`` ones stay in
registers for the later nodes.  The IR inner functions run under ``TritonOps``, as they run
under ``CppOps`` for the host."""
from __future__ import annotations

import dataclasses

import sympy
import torch

from .. import ir, symbolic
from ..loop_nest import Group, inner_ranges, node_indices
from ..virtualized import collect_origins, set_ops_handler
from .triton_ops import TL_DTYPE, TritonOps, TVar, compute_dtype, literal

PRELUDE = '''import triton
import triton.language as tl
from triton.language.extra import libdevice as hmath


@triton.jit
def _max_nan(a, b):
    return tl.where((a != a) | (a > b), a, b)


@triton.jit
def _min_nan(a, b):
    return tl.where((a != a) | (a < b), a, b)


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _prod(a, b):
    return a * b


@triton.jit
def _maximum(a, b):
    return tl.maximum(a, b)


@triton.jit
def _minimum(a, b):
    return tl.minimum(a, b)


@triton.jit
def _argmax(av, ai, bv, bi):
    a_nan = av != av
    b_nan = bv != bv
    pick = (av > bv) | (a_nan & (bv == bv)) | (((av == bv) | (a_nan & b_nan)) & (ai < bi))
    return tl.where(pick, av, bv), tl.where(pick, ai, bi)


@triton.jit
def _argmin(av, ai, bv, bi):
    a_nan = av != av
    b_nan = bv != bv
    pick = (av < bv) | (a_nan & (bv == bv)) | (((av == bv) | (a_nan & b_nan)) & (ai < bi))
    return tl.where(pick, av, bv), tl.where(pick, ai, bi)
'''


@dataclasses.dataclass
class TritonKernel:
    name: str
    source: str
    buffer_args: list       # buffer names, in parameter order
    symbol_args: list       # size symbols (sympy), in parameter order
    xnumel: sympy.Expr      # iterations of the outer loops: the grid is cdiv(xnumel, XBLOCK)


def render_kernel(name: str, group: Group) -> TritonKernel:
    ops = TritonOps([0])
    outer = group.outer
    outer_vars = list(symbolic.index_symbols("i", len(outer)))
    ops.ranges.update(zip(outer_vars, outer))
    xnumel = symbolic.product(outer)
    body = ["xindex = tl.program_id(0) * XBLOCK + tl.arange(0, XBLOCK)[:, None]",
            f"xmask = xindex < {ops.index(xnumel)}"]
    body += _split_index(ops, "xindex", outer_vars, outer)
    for position, node in enumerate(group.nodes):
        with set_ops_handler(ops), collect_origins():
            body += _node(ops, node, group, outer_vars, f"acc{position}")
    symbols = sorted((s for s in ops.symbols if not s.name.startswith(("i", "x", "r", "tmp"))),
                     key=lambda s: s.name)
    buffers = list(ops.stores) + [n for n in ops.loads if n not in ops.stores]
    params = buffers + [s.name for s in symbols] + ["XBLOCK: tl.constexpr", "RBLOCK: tl.constexpr"]
    source = (f"@triton.jit\ndef {name}({', '.join(params)}):\n"
              + "\n".join("    " + line for line in body) + "\n")
    return TritonKernel(name, source, buffers, symbols, xnumel)


def _split_index(ops: TritonOps, flat: str, variables: list, ranges) -> list:
    """``var = flat // stride % size`` for each dim of ``ranges`` (row-major)."""
    lines = []
    strides = symbolic.contiguous_strides(list(ranges))
    for position, (var, size, stride) in enumerate(zip(variables, ranges, strides)):
        whole = sympy.Symbol(flat, integer=True, nonnegative=True)
        expr = whole if len(ranges) == 1 else (symbolic.FloorDiv(whole, stride) if position == 0
                                               else symbolic.ModularIndexing(whole, stride, size))
        lines.append(f"{var} = {ops.index(expr)}")
    return lines


def _node(ops: TritonOps, node, group: Group, outer_vars: list, acc: str) -> list:
    inner = inner_ranges(node, group.outer)
    inner_vars = list(symbolic.index_symbols("x", len(inner)))
    ops.ranges.update(zip(inner_vars, inner))
    index, rindex = node_indices(node, outer_vars, group.outer, inner_vars)
    reduction = isinstance(node.data, ir.Reduction)
    if not inner:  # one value per row
        ops.lines, ops.cse = [], {}
        if reduction:
            value = node.data.inner_fn(index, rindex)
            return ops.lines + _finish(ops, node, group, index, value)
        node.data.store_to(node, index)
        return ops.lines
    rnumel = symbolic.product(inner)
    outside, ops.lines, ops.cse = [], [], {}
    ops.masks.append("rmask")
    loop = ["rindex = roffset + tl.arange(0, RBLOCK)[None, :]", f"rmask = rindex < {ops.index(rnumel)}"]
    loop += _split_index(ops, "rindex", inner_vars, inner)
    ops.lines = []
    if reduction:
        value = node.data.inner_fn(index, rindex)
        outside, update, value = _accumulate(ops, node, value, acc)
        loop += ops.lines + update
    else:
        node.data.store_to(node, index)
        loop += ops.lines
    ops.masks.pop()
    ops.lines, ops.cse = [], {}
    lines = outside + [f"for roffset in range(0, {ops.index(rnumel)}, RBLOCK):"] + ["    " + line for line in loop]
    if reduction:
        lines += _finish(ops, node, group, index, value)
    return lines


_INIT = {"sum": 0, "prod": 1, "max": float("-inf"), "min": float("inf"), "any": 0, "all": 1,
         "argmax": float("-inf"), "argmin": float("inf")}


def _accumulate(ops: TritonOps, node, value: TVar, acc: str) -> tuple:
    """(lines before the loop, lines ending each step, the finished row value)."""
    data = node.data
    kind = data.reduction_type
    acc_dtype = compute_dtype(value.dtype if kind in ("max", "min", "argmax", "argmin") else data.dtype)
    if kind in ("any", "all"):
        acc_dtype = torch.int32
    if value.dtype != acc_dtype:
        value = ops.to_dtype(value, acc_dtype) if acc_dtype != torch.int32 else \
            TVar(f"({value} != 0).to(tl.int32)", torch.int32)
    init = _init(kind, acc_dtype)
    tl_type = TL_DTYPE[acc_dtype]
    before = [f"{acc} = tl.full([XBLOCK, RBLOCK], {init}, {tl_type})"]
    masked = f"tl.where(xmask & rmask, {value}, {init})"
    if kind in ("argmax", "argmin"):
        before.append(f"{acc}_index = tl.full([XBLOCK, RBLOCK], 0, tl.int64)")
        better = ">" if kind == "argmax" else "<"
        step = [f"{acc}_new = {masked}",
                f"{acc}_better = xmask & rmask & (({acc}_new {better} {acc}) | (({acc}_new != {acc}_new) & ({acc} == {acc})))",
                f"{acc}_index = tl.where({acc}_better, rindex.to(tl.int64), {acc}_index)",
                f"{acc} = tl.where({acc}_better, {acc}_new, {acc})"]
        return before, step, TVar(f"tl.reduce(({acc}, {acc}_index), 1, _{kind})[1][:, None]", torch.int64)
    combine = {"sum": f"{acc} + {masked}", "prod": f"{acc} * {masked}",
               "max": f"_max_nan({acc}, {masked})", "min": f"_min_nan({acc}, {masked})",
               "any": f"tl.maximum({acc}, {masked})", "all": f"tl.minimum({acc}, {masked})"}[kind]
    final = {"sum": "_add", "prod": "_prod", "max": "_max_nan", "min": "_min_nan", "any": "_maximum",
             "all": "_minimum"}[kind]
    final = f"tl.reduce({acc}, 1, {final})"
    result = TVar(f"{final}[:, None]", acc_dtype)
    if kind in ("any", "all"):
        result = TVar(f"({final}[:, None] != 0)", torch.bool)
    return before, [f"{acc} = {combine}"], result


def _finish(ops: TritonOps, node, group: Group, index, value: TVar) -> list:
    """The row's result: through the epilogue, then stored or kept in registers."""
    ops.lines, ops.cse = [], {}
    result = ops._emit(str(value), value.dtype)
    if node.data.epilogue is not None:
        result = node.data.epilogue(result)
    if node.name in group.local:
        ops.define_local(node.name, result, node.get_dtype())
    else:
        ops.store(node.name, node.layout.index(index), result, node.get_dtype())
    lines, ops.lines = ops.lines, []
    return lines


def _init(kind: str, dtype: torch.dtype) -> str:
    value = _INIT[kind]
    if not dtype.is_floating_point and value in (float("inf"), float("-inf")):
        info = torch.iinfo(dtype) if dtype != torch.bool else None
        value = (info.min if value < 0 else info.max) if info else int(value > 0)
    return literal(value, dtype)
