"""Renders a kernel (a group of nodes in one loop nest, see ``loop_nest``) as a C++ function
with a plain C ABI: pointers to buffers, then int64 size symbols."""
from __future__ import annotations

import dataclasses
import importlib.resources
import re

import sympy
import torch

from .. import ir, symbolic
from ..dtypes import STORAGE_CTYPE
from ..planning.loop_nest import MAX_PARALLEL_DIMS, Group, node_indices, split_vars
from ..planning.loop_plan import LoopPlan
from ..planning.plan import KernelPlan
from ..printer import pexpr
from ..virtualized import collect_origins, in_order, set_ops_handler
from .code_handler import Var
from .cpp_ops import IDENTIFIER, CppOps, compute_ctype

LOOP_PREFIXES = ("i", "x", "idx")
PRELUDE = importlib.resources.files("torch_hetero.codegen").joinpath("cpp_prelude.h").read_text()


@dataclasses.dataclass
class CppKernel:
    name: str
    source: str
    buffer_args: list       # buffer names, in parameter order
    symbol_args: list       # size symbols (sympy), in parameter order
    origins: list           # ATen ops fused into this kernel
    may_divide_by_zero: bool  # the wrapper checks for an integer division by zero after it

    def launch(self) -> list:
        """The wrapper's lines that call it."""
        args = [f"{b}.data_ptr()" for b in self.buffer_args] + [pexpr(s) for s in self.symbol_args]
        return [f"{self.name}({', '.join(args)})"] + (["check_zero_division()"] if self.may_divide_by_zero else [])


def library_source(prelude: str, kernels) -> str:
    """The library's source as one text: what the build cache's key hashes and reports show."""
    return prelude + "\n" + "\n".join(kernels)


def render_kernel(kernel: KernelPlan, storage: dict) -> CppKernel:
    """One C++ function for a kernel's group: the shared outer loops (parallel when the work
    is large enough), inside them each node's own inner loop, in order (a fused matmul is
    ATen's, called before it), as the kernel's loop plan (``kernel.cost.loops``) says which
    loops are parallel, split and vectorized.  ``storage`` (buffer sizes, for Triton's index
    width) is not needed: host loops index in int64."""
    name, group = kernel.name, kernel.group
    loops = kernel.cost.loops
    ops = CppOps()
    outer_vars = _loop_vars("i", len(group.outer))
    ops.ranges.update(zip(outer_vars, group.outer))
    body: list[str] = []
    fused: dict = {}
    along_outer = any(n.outer_lanes for n in loops.nodes)   # a lone node vectorized along its last outer loop
    outer = group.outer[:-1] if along_outer else group.outer
    if group.column:
        with set_ops_handler(ops), collect_origins() as origins:
            rendered = _column_reduction(ops, group, loops, outer_vars)
        return _function(name, ops, rendered, in_order(origins, group.nodes[0].data.origins))
    for position, (node, node_loops) in enumerate(zip(group.nodes, loops.nodes)):
        with set_ops_handler(ops), collect_origins() as origins, ops.scope() as lines:
            inner = node_loops.inner
            inner_vars = _loop_vars("x", len(inner))
            ops.ranges.update(zip(inner_vars, inner))
            index, rindex = node_indices(node, outer_vars, group.outer, split_vars(inner_vars, node_loops.split))
            if along_outer:
                node.data.store_to(node, index)
                inside = _loops(ops, inner, inner_vars, lines)
                body += _loops(ops, group.outer[-1:], outer_vars[-1:], inside, pragma="#pragma omp simd")
            elif isinstance(node.data, ir.Pointwise):
                node.data.store_to(node, index)
                # vectorized calls to libm included (vector variants from libmvec, see cpp_prelude.h)
                simd = "#pragma omp simd" if node_loops.vectorized else ""
                body += _loops(ops, inner, inner_vars, lines, pragma=simd)
            else:
                body += _reduction(ops, node, index, rindex, inner, inner_vars, f"acc{position}",
                                   node.name in group.local, node.name in group.reread, node_loops.vectorized)
        fused.update(dict.fromkeys(in_order(origins, node.data.origins)))
    return _function(name, ops, _loops(ops, outer, outer_vars, body, parallel=loops.parallel), list(fused))


def _function(name: str, ops: CppOps, loops: list, fused: list) -> CppKernel:
    symbols = sorted((s for s in ops.symbols if not s.name.startswith(LOOP_PREFIXES)), key=lambda s: s.name)
    params = [f"{STORAGE_CTYPE[d]}* __restrict__ {n}" for n, d in ops.stores.items()]
    params += [f"const {STORAGE_CTYPE[d]}* __restrict__ {n}" for n, d in ops.loads.items() if n not in ops.stores]
    params += [f"{'double' if symbolic.is_float_symbol(s) else 'int64_t'} {s.name}" for s in symbols]
    header = f'// {", ".join(fused) or "copy"}\nextern "C" void {name}({", ".join(params)})'
    includes = "".join(f"#include <{h}>\n" for h in sorted(ops.headers))
    source = includes + header + " {\n" + "\n".join("    " + line for line in loops) + "\n}\n"
    buffer_args = list(ops.stores) + [n for n in ops.loads if n not in ops.stores]
    return CppKernel(name, source, buffer_args, symbols, fused, ops.may_divide_by_zero)


def _loop_vars(prefix: str, count: int) -> list:
    return list(symbolic.index_symbols(prefix, count))


def _loops(ops: CppOps, ranges, variables, body: list, parallel: bool = False, pragma: str = "") -> list:
    """Wrap ``body`` in one loop per range; ``pragma`` goes on the innermost loop, and with
    ``parallel`` the outer ones (up to MAX_PARALLEL_DIMS) become one OpenMP loop.  A simd loop
    of constant length has its invariant statements hoisted out of it (``_hoisted``)."""
    before = []
    if pragma and len(ranges) == 1 and ranges[0].is_Integer and int(ranges[0]) > 0:
        before, body = _hoisted(ops, body, variables[0])
    out = body
    for depth in reversed(range(len(ranges))):
        var, size = variables[depth], ranges[depth]
        head = [f"for (int64_t {var} = 0; {var} < {ops.index(size)}; ++{var}) {{"]
        if depth == len(ranges) - 1 and pragma:
            head.insert(0, pragma)
        if depth == 0 and parallel:
            levels = min(len(ranges), MAX_PARALLEL_DIMS)
            head.insert(0, "#pragma omp parallel for" + (f" collapse({levels})" if levels > 1 else ""))
        out = head + ["    " + line for line in out] + ["}"]
    return before + out


_DECLARED = re.compile(r"[A-Za-z_][A-Za-z0-9_:<>]* ([A-Za-z_][A-Za-z0-9_]*) = ")
_DECLARATION = re.compile(_DECLARED.pattern + "(.*);")
_ASSIGNMENT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*) = ")
_RECORDING = ("hetero_floordiv", "hetero_truncdiv", "hetero_mod")   # record a zero divisor


def _hoisted(ops: CppOps, body: list, variable) -> tuple:
    """(statements moved before the loop over ``variable``, the body left): the top-level
    declarations whose value does not depend on it, in order.  An embedding row's index read
    per element kept g++ gathering the row (vgatherqps, its accumulator spilled) where one
    row pointer serves the whole loop.  Not moved: what reads a variable left inside, is
    assigned again (a masked value) or divides integers (a zero divisor is recorded)."""
    reassigned = {m.group(1) for line in body for m in [_ASSIGNMENT.match(line)] if m}
    inside: set = set()
    before, after = [], []
    for line in body:
        declaration = _DECLARATION.fullmatch(line)
        if declaration is None:
            inside.update(_DECLARED.findall(line))
            after.append(line)
            continue
        name, expr = declaration.groups()
        if (variable.name in ops.dependencies(expr) or name in reassigned or inside & set(IDENTIFIER.findall(expr))
                or any(helper in expr for helper in _RECORDING)):
            inside.add(name)
            after.append(line)
        else:
            before.append(line)
    return before, after


_INIT = {"sum": 0, "prod": 1, "any": False, "all": True}
_COMBINE = {"sum": "{acc} += {value};", "prod": "{acc} *= {value};",
            "max": "{acc} = hetero_max<{ctype}>({acc}, {value});",
            "min": "{acc} = hetero_min<{ctype}>({acc}, {value});",
            "any": "{acc} = {acc} || {value};", "all": "{acc} = {acc} && {value};"}
COLUMN_TILE = 64   # outputs one column-reduction iteration accumulates (4 AVX-512 vectors of floats)


def _column_reduction(ops: CppOps, group: Group, loops: LoopPlan, outer_vars: list) -> list:
    """A column reduction (``kernel_analysis.column_reduction``): tiles of COLUMN_TILE
    consecutive outputs along the last outer dim, each with an accumulator array; the
    reduction loops run outside a vectorized loop over the tile's lanes."""
    node, data = group.nodes[0], group.nodes[0].data
    *lead, last = group.outer
    tile, lane = sympy.Symbol("it0", integer=True, nonnegative=True), sympy.Symbol("ij0", integer=True, nonnegative=True)
    ops.ranges.update({tile: last, lane: sympy.Integer(COLUMN_TILE)})
    inner = loops.nodes[0].inner
    inner_vars = _loop_vars("x", len(inner))
    ops.ranges.update(zip(inner_vars, inner))
    index, rindex = node_indices(node, outer_vars[:-1] + [tile + lane], group.outer, inner_vars)
    kind = data.reduction_type
    with ops.scope() as computed:
        value = data.inner_fn(index, rindex)
        acc_dtype = value.dtype if kind in ("max", "min") else data.dtype
        if value.dtype != acc_dtype:
            value = ops.to_dtype(value, acc_dtype)
    ctype, acc, count = compute_ctype(acc_dtype), f"acc[{lane}]", "count"
    combine = computed + [_COMBINE[kind].format(acc=acc, value=value, ctype=ctype)]

    def lanes(body):
        return ["#pragma omp simd", f"for (int64_t {lane} = 0; {lane} < {count}; ++{lane}) {{",
                *["    " + line for line in body], "}"]
    with ops.scope() as stored:
        result = Var(acc, acc_dtype)
        if data.epilogue is not None:
            result = data.epilogue(result)
        ops.store(node.name, node.layout.index(index), result, node.get_dtype())
    body = [f"const int64_t {count} = hetero_imin({COLUMN_TILE}, {ops.index(last)} - {tile});",
            f"{ctype} acc[{COLUMN_TILE}];",
            *lanes([f"{acc} = {_init_value(kind, acc_dtype, ctype)};"]),
            *_loops(ops, inner, inner_vars, lanes(combine)),
            *lanes(stored)]
    parallel = loops.parallel
    tiles = [f"for (int64_t {tile} = 0; {tile} < {ops.index(last)}; {tile} += {COLUMN_TILE}) {{",
             *["    " + line for line in body], "}"]
    if not lead:
        return (["#pragma omp parallel for"] if parallel else []) + tiles
    return _loops(ops, tuple(lead), outer_vars[:-1], tiles, parallel=parallel)


def _reduction(ops: CppOps, node, index, rindex, inner, inner_vars, acc: str, local: bool, reread: bool,
               vectorized: bool) -> list:
    """A reduction's accumulator, its inner loop and its result: stored, or (``local``) kept
    in a variable named after the buffer, which the group's later nodes read; ``reread``: both
    stored and kept, so that those reads stay off memory (a load of the stored value inside
    their loops kept g++ from vectorizing a norm's second pass).  ``vectorized``: the loop plan's
    word on its loop (a float sum or product, a max or min: ``loop_plan.node_loops``)."""
    data: ir.Reduction = node.data
    if isinstance(data, ir.Sort):
        return _sort(ops, node, index, rindex, inner, inner_vars, acc)
    kind = data.reduction_type
    value = data.inner_fn(index, rindex)
    acc_dtype = value.dtype if kind in ("max", "min", "argmax", "argmin") else data.dtype
    if isinstance(data, ir.Scan) and acc_dtype.is_floating_point and kind in ("sum", "prod", "logsumexp"):
        acc_dtype = torch.float64  # ATen's CPU scans accumulate in double, and so do we
    if value.dtype != acc_dtype:
        value = ops.to_dtype(value, acc_dtype)
    ctype = compute_ctype(acc_dtype)
    init = [f"{ctype} {acc} = {_init_value(kind, acc_dtype, ctype)};"]
    body = ops.lines
    if isinstance(data, ir.Scan):
        loops = _scan(ops, node, index, rindex, inner, inner_vars, value, acc, init)
        return init + loops
    if kind in ("argmax", "argmin"):
        init.append(f"int64_t {acc}_index = 0;")
        flat = sum((r * s for r, s in zip(rindex, symbolic.contiguous_strides(data.reduction_ranges))),
                   sympy.Integer(0))
        better = ">" if kind == "argmax" else "<"
        body.append(f"if ({value} {better} {acc} || ({value} != {value} && {acc} == {acc})) "
                    f"{{ {acc} = {value}; {acc}_index = {ops.index(flat)}; }}")
        result = Var(f"{acc}_index", torch.int64)
    elif kind in ("max", "min") and acc_dtype != torch.bool:
        loops = _extremum(ops, kind, inner, inner_vars, value, acc, init, vectorized)
        return init + loops + _reduction_result(ops, node, index, Var(acc, acc_dtype), local, reread)
    else:
        body.append(_COMBINE[kind].format(acc=acc, value=value, ctype=ctype))
        result = Var(acc, acc_dtype)
    simd = f"#pragma omp simd reduction({'+' if kind == 'sum' else '*'}:{acc})" if vectorized else ""
    loops = _loops(ops, inner, inner_vars, body, pragma=simd)
    return init + loops + _reduction_result(ops, node, index, result, local, reread)


def _extremum(ops: CppOps, kind: str, inner, inner_vars, value, acc: str, init: list, vectorized: bool) -> list:
    """A max/min reduction's loop, vectorized (as the loop plan has it): OpenMP's max/min
    combine plus, for floats, a flag that a NaN was seen (the result is then NaN, as in eager;
    ``init`` gets the flag).  The NaN-propagating combine (``hetero_max``) made one serial chain
    per row, ~7x slower."""
    combine = [f"{acc} = {value} {'>' if kind == 'max' else '<'} {acc} ? {value} : {acc};"]
    clauses, after = f"reduction({kind}:{acc})", []
    if value.dtype.is_floating_point:
        init.append(f"uint32_t {acc}_nan = 0;")
        combine.insert(0, f"{acc}_nan |= {value} != {value};")
        clauses += f" reduction(|:{acc}_nan)"
        after = [f"if ({acc}_nan) {acc} = NAN;"]
    simd = f"#pragma omp simd {clauses}" if vectorized else ""
    return _loops(ops, inner, inner_vars, ops.lines + combine, pragma=simd) + after


def _reduction_result(ops: CppOps, node, index, result, local: bool, reread: bool) -> list:
    """After a reduction's loop: its epilogue, then the result stored or kept (see _reduction)."""
    data = node.data
    with ops.scope() as lines:
        if data.epilogue is not None:
            result = data.epilogue(result)
        if local or reread:
            result = ops.define_local(node.name, result, node.get_dtype(),
                                      variable=None if local else f"{node.name}_value")
        if not local:
            ops.store(node.name, node.layout.index(index), result, node.get_dtype())
    return lines


def _scan(ops: CppOps, node, index, rindex, inner, inner_vars, value, acc: str, init: list) -> list:
    """A prefix reduction's loop: every prefix is stored, in order (``init`` gets the
    argmax/argmin position variable)."""
    data, kind = node.data, node.data.reduction_type
    body = ops.lines
    result = Var(acc, value.dtype)
    if kind in ("argmax", "argmin"):  # a NaN, once seen, stays; ties take the later position
        init.append(f"int64_t {acc}_index = 0;")
        keep = ">=" if kind == "argmax" else "<="
        body.append(f"if ({value} != {value} || ({acc} == {acc} && {value} {keep} {acc})) "
                    f"{{ {acc} = {value}; {acc}_index = {ops.index(rindex[0])}; }}")
        result = Var(f"{acc}_index", torch.int64)
    else:
        body.append({"sum": f"{acc} += {value};", "prod": f"{acc} *= {value};",
                     "logsumexp": f"{acc} = hetero_logaddexp({acc}, {value});"}[kind])
    ops.store(node.name, node.layout.index(data.full_index(index, rindex)), result, node.get_dtype())
    return _loops(ops, inner, inner_vars, body)


def _sort(ops: CppOps, node, index, rindex, inner, inner_vars, acc: str) -> list:
    """Per row: a key function over the row position (the node's value computation), a stable
    sort of the positions by key (NaNs last; first when descending), the positions stored."""
    data: ir.Sort = node.data
    value = data.inner_fn(index, rindex)
    ops.headers |= {"algorithm", "numeric", "vector"}
    var, length = inner_vars[0], ops.index(inner[0])
    ctype = compute_ctype(value.dtype)
    before = "(a > b) || (a != a && b == b)" if data.descending else "(a < b) || (b != b && a == a)"
    lines = [f"std::vector<int64_t> {acc}({length});",
             f"std::iota({acc}.begin(), {acc}.end(), int64_t(0));",
             f"auto {acc}_key = [&](int64_t {var}) -> {ctype} {{"]
    lines += ["    " + line for line in ops.lines] + [f"    return {value};", "};"]
    lines.append(f"std::stable_sort({acc}.begin(), {acc}.end(), [&](int64_t i, int64_t j) {{ "
                 f"{ctype} a = {acc}_key(i), b = {acc}_key(j); return {before}; }});")
    with ops.scope() as stored:
        ops.store(node.name, node.layout.index(data.full_index(index, rindex)), Var(f"{acc}[{var}]", torch.int64),
                  node.get_dtype())
    return lines + _loops(ops, inner, inner_vars, stored)


def _init_value(kind, dtype, ctype) -> str:
    if kind in _INIT:
        return str(_INIT[kind]).lower()
    lowest = kind in ("max", "argmax", "logsumexp")
    if dtype.is_floating_point:
        return "-INFINITY" if lowest else "INFINITY"
    if dtype == torch.bool:
        return "false" if lowest else "true"
    return f"std::numeric_limits<{ctype}>::{'lowest' if lowest else 'max'}()"
