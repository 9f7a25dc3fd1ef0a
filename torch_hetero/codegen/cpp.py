"""Renders a kernel (one realized Pointwise or Reduction node) as a C++ function with a
plain C ABI: pointers to buffers, then int64 size symbols."""
from __future__ import annotations

import dataclasses

import sympy
import torch

from .. import ir, symbolic
from ..virtualized import collect_origins, set_ops_handler
from .cpp_ops import STORAGE_CTYPE, CppOps, CVar, compute_ctype

PARALLEL_MIN_ELEMENTS = 32768   # below this, OpenMP fork/join costs more than it saves
LOOP_PREFIXES = ("i", "r", "idx")


@dataclasses.dataclass
class CppKernel:
    name: str
    source: str
    buffer_args: list       # buffer names, in parameter order
    symbol_args: list       # size symbols (sympy), in parameter order
    origins: list           # ATen ops fused into this kernel


def render_kernel(name: str, buffer: ir.ComputedBuffer) -> CppKernel:
    data = buffer.data
    lines: list[str] = []
    ops = CppOps(lines, [0])
    index = _loop_vars("i", data.ranges)
    ops.ranges.update(zip(index, data.ranges))
    with set_ops_handler(ops), collect_origins() as origins:
        if isinstance(data, ir.Pointwise):
            body = _pointwise_body(ops, buffer, index)
        else:
            body = _reduction_body(ops, buffer, index)
    loops = _loops(ops, data.ranges, index, body, _parallel_ok(data),
                   pragma="" if isinstance(data, ir.Pointwise) else None)
    symbols = sorted((s for s in ops.symbols if not s.name.startswith(LOOP_PREFIXES)), key=lambda s: s.name)
    params = [f"{STORAGE_CTYPE[d]}* __restrict__ {n}" for n, d in ops.stores.items()]
    params += [f"const {STORAGE_CTYPE[d]}* __restrict__ {n}" for n, d in ops.loads.items() if n not in ops.stores]
    params += [f"{'double' if symbolic.is_float_symbol(s) else 'int64_t'} {s.name}" for s in symbols]
    fused = _in_order(origins, data.origins)
    header = f'// {", ".join(fused) or "copy"}\nextern "C" void {name}({", ".join(params)})'
    source = header + " {\n" + "\n".join("    " + line for line in loops) + "\n}\n"
    buffer_args = list(ops.stores) + [n for n in ops.loads if n not in ops.stores]
    return CppKernel(name, source, buffer_args, symbols, fused)


def _in_order(inlined: list, own) -> list:
    """Fused ATen ops, producers first (inlined loaders were entered consumer-first)."""
    ordered = list(reversed(inlined))
    return ordered + [name for name in own if name not in ordered]


def _loop_vars(prefix: str, ranges) -> list:
    """One symbol per dim; size-1 dims get the constant 0 and no loop."""
    names = symbolic.index_symbols(prefix, len(ranges))
    return [sympy.Integer(0) if size == 1 else var for var, size in zip(names, ranges)]


def parallel_iterations(data):
    """How many iterations the generated OpenMP loop splits across threads (1: serial)."""
    if not _parallel_ok(data):
        return sympy.Integer(1)
    dims = [size for size in data.ranges if size != 1]
    collapsed = dims[:3] if isinstance(data, ir.Reduction) else dims[:max(len(dims) - 1, 1)][:3]
    return symbolic.product(collapsed)


def _parallel_ok(data) -> bool:
    numel = symbolic.product(list(data.ranges) + list(getattr(data, "reduction_ranges", ())))
    return not numel.is_number or int(numel) >= PARALLEL_MIN_ELEMENTS


def _loops(ops: CppOps, ranges, index, body: list, parallel: bool, pragma: str | None = "") -> list:
    """Wrap ``body`` in a loop per non-trivial dim; the outer ones run in parallel.
    ``pragma`` goes on the innermost loop; None marks the loops around a reduction, which may
    all be collapsed into the parallel loop."""
    dims = [(var, size) for var, size in zip(index, ranges) if not isinstance(var, sympy.Integer)]
    out = body
    for depth, (var, size) in reversed(list(enumerate(dims))):
        head = [f"for (int64_t {var} = 0; {var} < {ops.index(size)}; ++{var}) {{"]
        if depth == len(dims) - 1 and pragma:
            head.insert(0, pragma)
        if depth == 0 and parallel:
            # keep the innermost loop of a pointwise kernel out of the collapse: it vectorizes
            levels = min(len(dims) - (0 if pragma is None else 1), 3)
            head.insert(0, "#pragma omp parallel for" + (f" collapse({levels})" if levels > 1 else ""))
        out = head + ["    " + line for line in out] + ["}"]
    return out


def _pointwise_body(ops: CppOps, buffer, index) -> list:
    buffer.data.store_to(buffer, index)
    return list(ops.lines)


_INIT = {"sum": 0, "prod": 1, "any": False, "all": True}


def _reduction_body(ops: CppOps, buffer, index) -> list:
    data: ir.Reduction = buffer.data
    kind = data.reduction_type
    rindex = _loop_vars("r", data.reduction_ranges)
    ops.ranges.update(zip(rindex, data.reduction_ranges))
    body_lines: list = []
    ops.lines = body_lines
    value = data.inner_fn(index, rindex)
    acc_dtype = value.dtype if kind in ("max", "min", "argmax", "argmin") else data.dtype
    if value.dtype != acc_dtype:
        value = ops.to_dtype(value, acc_dtype)
    ctype = compute_ctype(acc_dtype)
    init = [f"{ctype} acc = {_init_value(kind, acc_dtype, ctype)};"]
    if kind in ("argmax", "argmin"):
        init.append("int64_t acc_index = 0;")
        flat = sum((r * s for r, s in zip(rindex, symbolic.contiguous_strides(data.reduction_ranges))),
                   sympy.Integer(0))
        better = ">" if kind == "argmax" else "<"
        body_lines.append(f"if ({value} {better} acc || ({value} != {value} && acc == acc)) "
                          f"{{ acc = {value}; acc_index = {ops.index(flat)}; }}")
        result = CVar("acc_index", torch.int64)
    else:
        body_lines.append({"sum": f"acc += {value};", "prod": f"acc *= {value};",
                           "max": f"acc = hetero_max<{ctype}>(acc, {value});",
                           "min": f"acc = hetero_min<{ctype}>(acc, {value});",
                           "any": f"acc = acc || {value};", "all": f"acc = acc && {value};"}[kind])
        result = CVar("acc", acc_dtype)
    simd = f"#pragma omp simd reduction({'+' if kind == 'sum' else '*'}:acc)" if kind in ("sum", "prod") \
        and acc_dtype.is_floating_point else ""
    inner = _loops(ops, data.reduction_ranges, rindex, body_lines, parallel=False, pragma=simd)
    ops.lines = []
    ops.cse = {}
    if data.epilogue is not None:
        result = data.epilogue(result)
    ops.store(buffer.name, buffer.layout.index(index), result, buffer.get_dtype())
    return init + inner + ops.lines


def _init_value(kind, dtype, ctype) -> str:
    if kind in _INIT:
        return str(_INIT[kind]).lower()
    lowest = kind in ("max", "argmax")
    if dtype.is_floating_point:
        return "-INFINITY" if lowest else "INFINITY"
    if dtype == torch.bool:
        return "false" if lowest else "true"
    return f"std::numeric_limits<{ctype}>::{'lowest' if lowest else 'max'}()"
