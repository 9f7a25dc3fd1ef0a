"""Renders a kernel (a group of nodes in one loop nest, see ``loop_nest``) as a Triton kernel.

One program handles ``XBLOCK`` iterations of the flattened outer loops; inside it, each node
loops over its inner range in ``RBLOCK`` steps — one step when the plan is one-pass, several
when it is looped — with its loads masked at the edges.  Reductions accumulate a
``[XBLOCK, RBLOCK]`` block and reduce it across the row at the end; ``local`` ones stay in
registers for the later nodes.  The IR inner functions run under ``TritonOps``, as they run
under ``CppOps`` for the host."""
from __future__ import annotations

import dataclasses
from typing import Optional

import sympy
import torch

from .. import ir, symbolic
from ..dtypes import FLOAT8, TL_DTYPE
from ..planning.loop_nest import Group, inner_ranges, node_indices, unravel
from ..planning.plan import KernelPlan
from ..printer import pexpr
from ..virtualized import collect_origins, in_order, set_ops_handler
from . import triton_sort
from .code_handler import Var
from .triton_attention import render_attention
from .triton_grouped_mm import grouped_mm_body
from .triton_ops import TritonOps, compute_dtype, dot_operand, literal, narrow

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
def _to_bf16(x):
    return x.to(tl.bfloat16)


@triton.jit
def _to_fp8(x, M: tl.constexpr, B: tl.constexpr, MAXC: tl.constexpr, OVER: tl.constexpr, NANC: tl.constexpr,
            NZ: tl.constexpr):
    """float32 → an 8-bit float's byte (dtypes.Float8Format), as the C++ prelude's hetero_f2fp8."""
    u = x.to(tl.float32).to(tl.uint32, bitcast=True)
    sign = (u >> 24) & 0x80
    a = u & 0x7FFFFFFF
    magic = tl.full([], (127 - B + 23 - M + 1) << 23, tl.uint32)
    subnormal = (a.to(tl.float32, bitcast=True) + magic.to(tl.float32, bitcast=True)).to(tl.uint32, bitcast=True) - magic
    normal = (a - ((127 - B) << 23) + ((1 << (22 - M)) - 1) + ((a >> (23 - M)) & 1)) >> (23 - M)
    code = tl.where(a < ((128 - B) << 23), subnormal, normal)
    code = tl.where(code > MAXC, OVER, code)
    code = tl.where(a > 0x7F800000, NANC, code)
    if not NZ:
        sign = tl.where(code == 0, 0, sign)
    return (code | sign).to(tl.uint8)


@triton.jit
def _from_fp8(c, M: tl.constexpr, B: tl.constexpr, MAXC: tl.constexpr, INF: tl.constexpr, NZ: tl.constexpr):
    """An 8-bit float's byte → float32, as the C++ prelude's hetero_fp82f."""
    c = c.to(tl.uint32)
    sign = (c & 0x80) << 24
    mag = c & 0x7F
    normal = sign | ((mag + ((127 - B) << M)) << (23 - M))
    scale = tl.full([], (127 + 1 - B - M) << 23, tl.uint32).to(tl.float32, bitcast=True)
    bits = tl.where((mag >> M) == 0, (mag.to(tl.float32) * scale).to(tl.uint32, bitcast=True) | sign, normal)
    special = sign | 0x7FC00000
    if INF >= 0:
        special = tl.where(mag == INF, sign | 0x7F800000, special)
    bits = tl.where(mag > MAXC, special, bits)
    if not NZ:
        bits = tl.where(c == 0x80, 0x7FC00000, bits)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _fp8_operand(bits, FP8: tl.constexpr, M: tl.constexpr, B: tl.constexpr, MAXC: tl.constexpr, INF: tl.constexpr,
                 NZ: tl.constexpr):
    """An fp8 operand's bytes as the matrix units' fp8 type (the interpreter decodes them)."""
    return bits.to(FP8, bitcast=True)


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    return tl.dot(a, b)


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _prod(a, b):
    return a * b


@triton.jit
def _ipow(base, exp):
    """An integer power by squaring, exact as ATen's (a float pow rounds 5 ** 3 to 124.99..., which
    truncates to 124); a negative exponent gives ATen's 1 for base 1, +-1 for base -1, else 0."""
    b = base + exp * 0
    e = exp + base * 0
    result = b * 0 + 1
    for _ in range(63):  # the bits of an int64 exponent
        result = tl.where((e & 1) != 0, result * b, result)
        b = b * b
        e = e >> 1
    zero = base * 0
    one, minus_one = zero + 1, zero - 1
    negative = tl.where(base == one, one, tl.where(base == minus_one, tl.where((exp & 1) != 0, minus_one, one), zero))
    return tl.where(exp < 0, negative, result)


@triton.jit
def _welford(mean_a, m2_a, n_a, mean_b, m2_b, n_b):
    """Chan's merge of two lanes' (mean, sum of squared deviations, count); an empty lane
    adds nothing (not even an overflowing delta² times its zero weight)."""
    n = n_a + n_b
    delta = mean_b - mean_a
    weight_b = n_b / tl.maximum(n, 1)
    both = (n_a > 0) & (n_b > 0)
    mean = tl.where(n_b == 0, mean_a, tl.where(n_a == 0, mean_b, mean_a + delta * weight_b))
    return mean, m2_a + m2_b + tl.where(both, delta * delta * n_a * weight_b, 0), n


@triton.jit
def _logaddexp(a, b):
    """log(exp(a) + exp(b)) without overflow; equal infinities stay (logcumsumexp)."""
    lo = tl.where(b != b, b, tl.minimum(a, b))
    hi = tl.where(b != b, b, tl.maximum(a, b))
    return tl.where((lo == hi) & (tl.abs(lo) == float("inf")), lo, hi + hmath.log1p(tl.exp(lo - hi)))


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
''' + triton_sort.PRELUDE


@dataclasses.dataclass
class TritonKernel:
    name: str
    source: str
    buffer_args: list       # buffer names, in parameter order
    symbol_args: list       # size symbols (sympy), in parameter order
    signature: dict         # parameter → Triton type ("*fp32", "i64"), for ahead-of-time compiles
    grid: tuple             # program counts (sympy), given the launch's block sizes
    constexprs: dict        # block-size parameter → value
    origins: list           # ATen ops fused into this kernel
    scratch: tuple = ()     # (name, elements, torch dtype name, like, zeroed): buffers the launch
                            # allocates (a split GEMM's partials and arrival counters) on ``like``'s device
    checks: tuple = ()      # (size, its largest value, message): what a launch needs that the plan assumed
    launch_options: tuple = ()  # (name, value): the plan's num_warps and num_stages (absent: Triton's defaults)
    read_as: dict = dataclasses.field(default_factory=dict)  # buffer → the dtype its pointer has here
    arg_views: tuple = ()   # (buffer, torch dtype name): passed as ``.view(dtype)``, where that
                            # differs from how it is stored (an 8-bit float as its bytes, a dtype view)

    def launch(self) -> list:
        """The wrapper's lines that launch it (none over an empty grid: an empty tensor),
        after its checks."""
        checks = [f"assert {pexpr(size)} <= {largest}, {message!r}" for size, largest, message in self.checks]
        if any(sympy.sympify(size) == 0 for size in self.grid):
            return checks
        views = dict(self.arg_views)
        args = [f"{b}.view(torch.{views[b]})" if b in views else b for b in self.buffer_args]
        args += [pexpr(s) for s in self.symbol_args]
        args += [f"{name}={value}" for name, value in self.constexprs.items()]
        args += [f"{name}={value}" for name, value in self.launch_options]
        grid = [pexpr(size) for size in self.grid]
        scratch = [f"{name} = {like}.{'new_zeros' if zeroed else 'new_empty'}(({pexpr(size)},), dtype=torch.{dtype})"
                   for name, size, dtype, like, zeroed in self.scratch]
        return checks + scratch + [f"{self.name}[({', '.join(grid)}{',' if len(grid) == 1 else ''})]({', '.join(args)})"]


def module_source(prelude: str, kernels) -> str:
    """The module of a graph's kernels after ``prelude``: what the loader imports and reports show."""
    return prelude + "\n\n" + "\n\n".join(kernels)


INT32_MAX = 2**31 - 1


def needs_int64(kernel: KernelPlan, storage: dict) -> bool:
    """Could an index of this kernel pass int32?  Yes when a buffer it touches, or its
    iteration space, may hold more than 2**31 - 1 elements (symbolic sizes may)."""
    group = kernel.group
    names = set(group.names) | set(kernel.loads)
    if group.matmul is not None:
        names |= {a.buffer.name for a in [*group.matmul.args, *group.matmul.kwargs.values()]
                  if isinstance(a, ir.StridedValue)}
        names |= {b.name for b in group.matmul.outputs if b is not None}
    sizes = [storage[n][0] for n in sorted(names) if n in storage] + [group.iterations()]
    return any(not sympy.sympify(size).is_number or int(size) > INT32_MAX for size in sizes)


def render_kernel(kernel: KernelPlan, storage: dict) -> TritonKernel:
    """``_render``, each buffer passed as the dtype its pointer has (``TritonKernel.arg_views``)."""
    rendered = _render(kernel, storage)
    stored = {b: storage[b][1] if b in storage else None for b in rendered.read_as}  # None: a constant
    views = tuple((b, str(want).removeprefix("torch.")) for b, want in rendered.read_as.items()
                  if stored[b] != want and (stored[b] is not None or want == torch.uint8))
    return dataclasses.replace(rendered, arg_views=views)


def _render(kernel: KernelPlan, storage: dict) -> TritonKernel:
    """With the kernel's tiling; when its group is a matmul's epilogue, the matmul template
    with it fused, in the plan's matmul tile; indices in int64 where ``storage`` (buffer name →
    elements, dtype) says they may pass int32 (``needs_int64``)."""
    name, group, tiling, wide = kernel.name, kernel.group, kernel.tiling, needs_int64(kernel, storage)
    if kernel.attention_tile is not None:
        ops, body, constexprs, grid, checks = render_attention(kernel, lambda axis: _program_id(axis, wide))
        rendered = _kernel(name, ops, body, constexprs, grid, [])  # its origin is its call's (renderers.render)
        warps = kernel.attention_tile.warps
        return dataclasses.replace(rendered, checks=checks, launch_options=(('num_warps', warps),) if warps else ())
    if group.matmul is not None and group.matmul.op == ir.GROUPED_MATMUL:
        ops = TritonOps()
        body, grid = grouped_mm_body(ops, group.matmul, kernel.matmul_tile, lambda axis: _program_id(axis, wide))
        tile = kernel.matmul_tile
        rendered = _kernel(name, ops, body, {"BM": tile.bm, "BN": tile.bn, "BK": tile.bk}, grid, [])
        return dataclasses.replace(rendered, launch_options=tile.launch_options)
    if group.matmul is not None and kernel.matmul_tile is not None:
        return _render_matmul(name, group, kernel.matmul_tile, wide)
    ops = TritonOps()
    outer = group.outer
    outer_vars = list(symbolic.index_symbols("i", len(outer)))
    ops.ranges.update(zip(outer_vars, outer))
    xnumel = symbolic.product(outer)
    body = [f"xindex = {_program_id(0, wide)} * XBLOCK + tl.arange(0, XBLOCK)[:, None]",
            f"xmask = xindex < {ops.index(xnumel)}"]
    body += _split_index(ops, "xindex", outer_vars, outer)
    origins: dict = {}
    pair = tiling.online
    for position, node in enumerate(group.nodes):
        if pair and node.name == pair.second:
            continue  # computed with the max (the mean), in its pass
        with set_ops_handler(ops), collect_origins() as inlined:
            if pair and node.name == pair.first:
                online = _online if pair.kind == "max+sum" else _online_norm
                body += online(ops, node, group.nodes[position + 1], group, outer_vars, f"acc{position}")
            elif isinstance(node.data, ir.Sort):
                body += triton_sort.render_sort(ops, node, outer_vars, group.outer, f"acc{position}", tiling)
            else:
                body += _node(ops, node, group, outer_vars, f"acc{position}")
        origins.update(dict.fromkeys(in_order(inlined, node.data.origins)))
        if pair and node.name == pair.first:
            origins.update(dict.fromkeys(group.nodes[position + 1].data.origins))
    constexprs = {"XBLOCK": tiling.xblock, "RBLOCK": tiling.rblock}
    grid = (symbolic.FloorDiv(xnumel + tiling.xblock - 1, tiling.xblock),)
    return _kernel(name, ops, body, constexprs, grid, list(origins))


def _program_id(axis: int, wide: bool) -> str:
    return f"tl.program_id({axis}).to(tl.int64)" if wide else f"tl.program_id({axis})"


def _kernel(name: str, ops: TritonOps, body: list, constexprs: dict, grid: tuple, origins: list) -> TritonKernel:
    symbols = sorted((s for s in ops.symbols if not s.name.startswith(("i", "x", "r", "k", "tmp"))),
                     key=lambda s: s.name)
    buffers = list(ops.stores) + [n for n in ops.loads if n not in ops.stores]
    dtypes = {b: ops.stores.get(b, ops.loads.get(b)) for b in buffers}
    signature = {b: "*" + _SHORT[dtypes[b]] for b in buffers}
    signature.update({s.name: "fp64" if symbolic.is_float_symbol(s) else "i64" for s in symbols})
    signature.update({c: "constexpr" for c in constexprs})
    params = list(signature)
    params = [p if p not in constexprs else f"{p}: tl.constexpr" for p in params]
    source = (f"@triton.jit\ndef {name}({', '.join(params)}):\n"
              + "\n".join("    " + line for line in body) + "\n")
    return TritonKernel(name, source, buffers, symbols, signature, grid, constexprs, origins,
                        read_as={b: torch.uint8 if d in FLOAT8 else d for b, d in dtypes.items()})


_SHORT = {torch.float32: "fp32", torch.float64: "fp64", torch.float16: "fp16", torch.bfloat16: "bf16",
          torch.int8: "i8", torch.uint8: "u8", torch.int16: "i16", torch.int32: "i32", torch.int64: "i64",
          torch.bool: "i1", **dict.fromkeys(FLOAT8, "u8")}


def _render_matmul(name: str, group: Group, tile, wide: bool) -> TritonKernel:
    """The matmul template: a ``[BM, BN]`` fp32 accumulator over ``BK`` steps of ``tl.dot``,
    then (addmm) the bias, then the group's nodes applied to the tile before it is stored.  The
    operands (``ExternCall.operands``) are inner functions run under ``TritonOps`` on the
    ``[BM, BK]`` and ``[BK, BN]`` index blocks inside the K loop: a strided load, or a value
    computed from loads (a convolution's im2col gather, masked at the padding).  Programs take
    output tiles in grouped order (``_grouped_tiles``); with a split of K (``tile.split_k``) the
    grid's last axis is the slice, and the tile's last slice to finish joins the partials before
    the epilogue (``_split_k_join``)."""
    call = group.matmul
    gemm = call.operands(group.dequantized)
    tensors = [a for a in call.args if isinstance(a, ir.StridedValue)]
    bias = tensors[0] if call.gemm is None and len(tensors) == 3 else None
    batched = gemm.batch is not None
    m, n, k = gemm.m, gemm.n, gemm.k
    ops = TritonOps()
    batch_var, rm, rn, ka, kb = (sympy.Symbol(v, integer=True, nonnegative=True)
                                 for v in ("i0", "rm", "rn", "ka", "kb"))
    ops.ranges.update({rm: m, rn: n, ka: k, kb: k})
    ops.block, ops.block_symbols = "(rm + rn)", frozenset({rm, rn})  # [BM, BN]: a store lacking rm or rn is broadcast
    body = [f"pid = {_program_id(0, wide)}"] + _grouped_tiles(ops.index(m), ops.index(n), tile.group_m) + [
            f"xmask = (rm < {ops.index(m)}) & (rn < {ops.index(n)})"]
    if batched:
        body.append(f"i0 = {_program_id(1, wide)}")
        ops.ranges[batch_var] = gemm.batch
    g = batch_var if batched else sympy.Integer(0)
    ieee = gemm.dtype == torch.float32  # fp32 stays IEEE, as in eager (no TF32)
    split = tile.split_k > 1
    k_range = f"0, {ops.index(k)}"
    if split:  # this program's slice of K: whole BK steps
        body += [f"ks = {_program_id(2 if batched else 1, wide)}",
                 f"k_slice = (({ops.index(k)} + SPLIT_K - 1) // SPLIT_K + BK - 1) // BK * BK"]
        k_range = f"ks * k_slice, tl.minimum((ks + 1) * k_slice, {ops.index(k)})"
    a_lines, a = _operand(ops, lambda: gemm.a(g, rm, ka), f"(rm < {ops.index(m)}) & (ka < {ops.index(k)})",
                          "(rm + ka)", {rm, ka}, gemm.dtype)
    b_lines, b = _operand(ops, lambda: gemm.b(g, kb, rn), f"(kb < {ops.index(k)}) & (rn < {ops.index(n)})",
                          "(kb + rn)", {kb, rn}, gemm.dtype)
    acc_dtype = torch.int32 if gemm.dtype == torch.int8 else torch.float32  # tl.dot of int8 sums in int32
    body += [f"acc = tl.full([BM, BN], 0, {TL_DTYPE[acc_dtype]})"]
    body += ["b_sums = tl.full([1, BN], 0, tl.int32)"] if gemm.column_sums else []
    body += [f"for koffset in range({k_range}, BK):",
             "    ka = koffset + tl.arange(0, BK)[None, :]",
             "    kb = koffset + tl.arange(0, BK)[:, None]"]
    body += ["    " + line for line in a_lines + [f"a = {a}"] + b_lines + [f"b = {b}"]]
    body += [f"    acc += _dot(a, b, {ieee})"]
    if gemm.column_sums:  # masked rows load 0: the sums are over K only
        body += ["    b_sums += tl.reduce(b.to(tl.int32), 0, _add)[None, :]", f"acc += {gemm.column_sums} * b_sums"]
    origins: dict = {}
    with ops.scope() as epilogue:
        value = Var("acc", acc_dtype)
        alpha, beta = call.kwargs.get("alpha", 1), call.kwargs.get("beta", 1)
        if alpha != 1:
            value = ops.mul(value, ops.constant(alpha, torch.float32))
        if bias is not None and beta != 0:  # beta 0 ignores the bias, NaNs included, as eager
            bias_vars = ([rm, rn])[-len(bias.layout.size):] if bias.layout.size else []  # size-1 dims: no stride
            loaded = ops.load(bias.buffer.name, bias.layout.index(bias_vars), bias.get_dtype())
            value = ops.add(value, ops.mul(loaded, ops.constant(beta, torch.float32)) if beta != 1 else loaded)
        if gemm.epilogue is not None:
            with set_ops_handler(ops):
                value = gemm.epilogue(g, rm, rn, value)
        out = call.result
        output = gemm.output(g, rm, rn)
        ops.define_local(out.name, value, out.get_dtype())  # rounded to the output dtype, as eager's epilogue sees it
        if out.name not in group.local:
            ops.store(out.name, out.layout.index(output), ops.locals[out.name], out.get_dtype())
        for node in group.nodes:
            if call.gemm is None:  # over the output's rows, or (fusion checked) its rows split in several dims
                rows = output[:-1] if len(group.outer) == len(output) - 1 else unravel(output[-2], group.outer)
                index, _ = node_indices(node, rows, group.outer, [rn])
            else:  # over the output's dims (fusion checked), in the node's loop order
                index = [output[d] for d in node.data.order] if node.data.order else output
            with set_ops_handler(ops), collect_origins() as inlined:
                node.data.store_to(node, index)
            origins.update(dict.fromkeys(in_order(inlined, node.data.origins)))
    rows = symbolic.FloorDiv(m + tile.bm - 1, tile.bm) * symbolic.FloorDiv(n + tile.bn - 1, tile.bn)
    grid = (rows, gemm.batch) if batched else (rows,)
    constexprs = {"BM": tile.bm, "BN": tile.bn, "BK": tile.bk, **({"GROUP_M": tile.group_m} if tile.group_m > 1 else {})}
    scratch = ()
    if split:
        like = tensors[0].buffer.name  # any input: the scratch goes on its device
        partials, arrivals = f"{name}_partials", f"{name}_arrivals"
        tiles = rows * gemm.batch if batched else rows
        body += _split_k_join(ops.index(rows), batched, partials, arrivals)
        epilogue = ["    " + line for line in epilogue]
        ops.stores.update({partials: torch.float32, arrivals: torch.int32})
        scratch = ((partials, tiles * tile.split_k * tile.bm * tile.bn, "float32", like, False),
                   (arrivals, tiles, "int32", like, True))
        grid, constexprs = grid + (tile.split_k,), {**constexprs, "SPLIT_K": tile.split_k}
    body += epilogue
    kernel = _kernel(name, ops, body, constexprs, grid, list(origins))
    return dataclasses.replace(kernel, scratch=scratch, launch_options=tile.launch_options)


def _split_k_join(tiles: str, batched: bool, partials: str, arrivals: str) -> list:
    """A split GEMM's handshake: each program stores its fp32 partial tile, counts itself in
    (an integer atomic, released after a barrier so that every thread's stores precede it),
    and the last of an output tile's SPLIT_K programs adds the partials in slice order (the
    same sum whatever the arrival order) and runs the epilogue."""
    tile = f"pid + i0 * {tiles}" if batched else "pid"
    return [f"tile = {tile}",
            "partial = tile * SPLIT_K * BM * BN + tl.arange(0, BM)[:, None] * BN + tl.arange(0, BN)[None, :]",
            f"tl.store({partials} + partial + ks * BM * BN, acc)",
            "tl.debug_barrier()",
            f"arrived = tl.atomic_add({arrivals} + tile, 1, sem=\"acq_rel\")",
            "if arrived == SPLIT_K - 1:",
            f"    acc = tl.load({partials} + partial)",
            "    for s in range(1, SPLIT_K):",
            f"        acc += tl.load({partials} + partial + s * BM * BN)"]


def _grouped_tiles(m: str, n: str, group_m: int) -> list:
    """Program ``pid`` → its output tile's rows ``rm`` and columns ``rn`` in grouped order (L2
    swizzle, ``tiling.group_rows``): programs walk GROUP_M tile rows down a tile column, then
    the next column; the last group may have fewer rows.  GROUP_M=1 is row-major order, written
    as such: no division by the group's row count, a runtime value."""
    if group_m == 1:
        return [f"blocks_n = ({n} + BN - 1) // BN",
                "rm = (pid // blocks_n) * BM + tl.arange(0, BM)[:, None]",
                "rn = (pid % blocks_n) * BN + tl.arange(0, BN)[None, :]"]
    return [f"blocks_n = ({n} + BN - 1) // BN",
            "group = pid // (GROUP_M * blocks_n)",
            f"group_rows = tl.minimum(({m} + BM - 1) // BM - group * GROUP_M, GROUP_M)",
            "in_group = pid % (GROUP_M * blocks_n)",
            "rm = (group * GROUP_M + in_group % group_rows) * BM + tl.arange(0, BM)[:, None]",
            "rn = (in_group // group_rows) * BN + tl.arange(0, BN)[None, :]"]


def _operand(ops: TritonOps, load, mask: str, block: str, symbols: set, dtype: torch.dtype) -> tuple:
    """(lines, value) of one operand block: ``load()`` run under ``mask`` (its edges) with
    ``block`` (spanned by ``symbols``) its index shape, the value rounded to the dtype the matrix
    units take; a plain load (a strided operand) is taken as stored, with no round trip through
    fp32 (an fp8 one: its bytes, as the dot's fp8 type)."""
    saved = ops.masks, ops.block, ops.block_symbols
    counter, ops.masks, ops.block, ops.block_symbols = ops.counter, [mask], block, frozenset(symbols)
    with ops.scope() as lines, set_ops_handler(ops):
        value = load()
    ops.masks, ops.block, ops.block_symbols = saved
    stored = ops.plain_loads.pop(str(value), None)  # its name may be used again (no temporary)
    if len(lines) == 1 and stored is not None and (stored[1] == dtype or stored[1] not in FLOAT8):
        ops.counter = counter  # no temporary
        return [], dot_operand(stored[0], dtype)
    return lines, dot_operand(narrow(ops.unrounded(value, dtype), dtype) if value.dtype != dtype else str(value), dtype)


def _split_index(ops: TritonOps, flat: str, variables: list, ranges) -> list:
    """``var = flat // stride % size`` for each dim of ``ranges`` (row-major)."""
    lines = []
    strides = [stride if stride != 0 else 1 for stride in symbolic.contiguous_strides(list(ranges))]  # empty dims: no lanes
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
        with ops.scope() as lines:
            if reduction:
                value = node.data.inner_fn(index, rindex)
                return lines + _finish(ops, node, group, index, value)
            node.data.store_to(node, index)
            return lines
    rnumel = symbolic.product(inner)
    outside = []
    loop = ["rindex = roffset + tl.arange(0, RBLOCK)[None, :]", f"rmask = rindex < {ops.index(rnumel)}"]
    loop += _split_index(ops, "rindex", inner_vars, inner)
    ops.masks.append("rmask")
    with ops.scope() as computed:
        if isinstance(node.data, ir.Scan):
            value = node.data.inner_fn(index, rindex)
            outside, update = _scan(ops, node, value, acc, node.data.full_index(index, rindex))
            loop += computed + update
            reduction = False  # every prefix is stored in the loop
        elif reduction:
            value = node.data.inner_fn(index, rindex)
            outside, update, value = _accumulate(ops, node, value, acc)
            loop += computed + update
        else:
            node.data.store_to(node, index)
            loop += computed
    ops.masks.pop()
    lines = outside + [f"for roffset in range(0, {ops.index(rnumel)}, RBLOCK):"] + ["    " + line for line in loop]
    if reduction:
        lines += _finish(ops, node, group, index, value)
    return lines


def _online(ops: TritonOps, row_max, row_sum, group: Group, outer_vars: list, acc: str) -> list:
    """One pass for a max and the sum of exp(t - max) (``planning.online``): each lane keeps
    a running max ``acc`` and a sum ``acc_sum`` of exp(t - running max), rescaled by
    exp(old - new) when the max grows; lanes join rescaled to the row's max.  A lane whose
    max is -inf holds no terms (its exp(-inf - -inf) would be NaN); a non-empty row whose
    max is -inf sums NaN, as the passes' exp(-inf - -inf) does in eager."""
    index, rindex, numel, loop = _row_pass(ops, row_max, group, outer_vars)
    rnumel = ops.index(numel)
    ops.masks.append("rmask")
    with ops.scope() as computed:
        value = row_max.data.inner_fn(index, rindex)
        dtype = compute_dtype(value.dtype)
        if value.dtype != dtype:
            value = ops.to_dtype(value, dtype)
        split = len(computed)  # the lines after need the new running max
        term = ops.exp(ops.sub(value, Var(f"{acc}_new", dtype)))
        sum_dtype = compute_dtype(row_sum.data.dtype)
        if term.dtype != sum_dtype:
            term = ops.to_dtype(term, sum_dtype)
    ops.masks.pop()
    lowest, zero = _init("max", dtype), literal(0, sum_dtype)
    loop += computed[:split] + [f"{acc}_new = _max_nan({acc}, tl.where(xmask & rmask, {value}, {lowest}))"]
    loop += computed[split:] + [
        f"{acc}_sum = {acc}_sum * tl.where({acc}_new == {lowest}, 1, tl.exp({acc} - {acc}_new))"
        f" + tl.where(xmask & rmask & ({acc}_new != {lowest}), {term}, {zero})",
        f"{acc} = {acc}_new"]
    lines = [f"{acc} = tl.full([XBLOCK, RBLOCK], {lowest}, {TL_DTYPE[dtype]})",
             f"{acc}_sum = tl.full([XBLOCK, RBLOCK], {zero}, {TL_DTYPE[sum_dtype]})",
             f"for roffset in range(0, {rnumel}, RBLOCK):"] + ["    " + line for line in loop]
    with ops.scope() as tail:
        total = ops._emit(f"tl.reduce({acc}, 1, _max_nan)[:, None]", dtype)
    lines += tail + _finish(ops, row_max, group, index, total)
    joined = f"tl.reduce(tl.where({acc} == {lowest}, {zero}, {acc}_sum * tl.exp({acc} - {total})), 1, _add)[:, None]"
    nonempty = sympy.sympify(numel).is_positive  # else a runtime test (a symbolic, or an empty, row)
    nan_row = f"{total} == {lowest}" if nonempty else f"({total} == {lowest}) & ({rnumel} > 0)"
    return lines + _finish(ops, row_sum, group, index, Var(f"tl.where({nan_row}, float(\"nan\"), {joined})", sum_dtype))


def _online_norm(ops: TritonOps, mean, deviations, group: Group, outer_vars: list, acc: str) -> list:
    """One pass for a mean and the sum of squared deviations from it (``planning.online``):
    each lane keeps the running sum ``acc`` (the mean is the row's total over its length, as
    the mean's own pass computes it) and Welford's running mean ``acc_mean`` and squared
    deviations ``acc_m2`` of its ``acc_n`` elements; lanes join by Chan's merge (``_welford``).
    An infinite or NaN element makes the squared deviations NaN, as (t - mean)² does in eager."""
    index, rindex, numel, loop = _row_pass(ops, mean, group, outer_vars)
    sum_dtype, stat_dtype = compute_dtype(mean.data.dtype), compute_dtype(deviations.data.dtype)
    ops.masks.append("rmask")
    with ops.scope() as computed:
        value = mean.data.inner_fn(index, rindex)
        summand = ops.to_dtype(value, sum_dtype) if value.dtype != sum_dtype else value
        stat = ops.to_dtype(value, stat_dtype) if value.dtype != stat_dtype else value
    ops.masks.pop()
    zero, stat_zero = literal(0, sum_dtype), literal(0, stat_dtype)
    loop += computed + [
        f"{acc}_valid = xmask & rmask",
        f"{acc} = {acc} + tl.where({acc}_valid, {summand}, {zero})",
        f"{acc}_n = {acc}_n + {acc}_valid.to({TL_DTYPE[stat_dtype]})",
        f"{acc}_delta = tl.where({acc}_valid, {stat} - {acc}_mean, {stat_zero})",
        f"{acc}_mean = {acc}_mean + {acc}_delta / tl.maximum({acc}_n, 1)",
        f"{acc}_m2 = {acc}_m2 + {acc}_delta * tl.where({acc}_valid, {stat} - {acc}_mean, {stat_zero})"]
    lines = [f"{acc} = tl.full([XBLOCK, RBLOCK], {zero}, {TL_DTYPE[sum_dtype]})"]
    lines += [f"{acc}_{s} = tl.full([XBLOCK, RBLOCK], {stat_zero}, {TL_DTYPE[stat_dtype]})"
              for s in ("mean", "m2", "n")]
    lines += [f"for roffset in range(0, {ops.index(numel)}, RBLOCK):"] + ["    " + line for line in loop]
    lines += _finish(ops, mean, group, index, Var(f"tl.reduce({acc}, 1, _add)[:, None]", sum_dtype))
    m2 = Var(f"tl.reduce(({acc}_mean, {acc}_m2, {acc}_n), 1, _welford)[1][:, None]", stat_dtype)
    return lines + _finish(ops, deviations, group, index, m2)


def _row_pass(ops: TritonOps, node, group: Group, outer_vars: list) -> tuple:
    """(index, rindex, row length, the lines that open each step) of one pass over ``node``'s row."""
    inner = inner_ranges(node, group.outer)
    inner_vars = list(symbolic.index_symbols("x", len(inner)))
    ops.ranges.update(zip(inner_vars, inner))
    index, rindex = node_indices(node, outer_vars, group.outer, inner_vars)
    numel = symbolic.product(inner)
    loop = ["rindex = roffset + tl.arange(0, RBLOCK)[None, :]", f"rmask = rindex < {ops.index(numel)}"]
    return index, rindex, numel, loop + _split_index(ops, "rindex", inner_vars, inner)


_INIT = {"sum": 0, "prod": 1, "max": float("-inf"), "min": float("inf"), "any": 0, "all": 1, "logsumexp": float("-inf"),
         "argmax": float("-inf"), "argmin": float("inf")}


def _accumulate(ops: TritonOps, node, value: Var, acc: str) -> tuple:
    """(lines before the loop, lines ending each step, the finished row value)."""
    data = node.data
    kind = data.reduction_type
    acc_dtype = compute_dtype(value.dtype if kind in ("max", "min", "argmax", "argmin") else data.dtype)
    if kind in ("any", "all"):
        acc_dtype = torch.int32
    if value.dtype != acc_dtype:
        value = ops.to_dtype(value, acc_dtype) if acc_dtype != torch.int32 else \
            Var(f"({value} != 0).to(tl.int32)", torch.int32)
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
        return before, step, Var(f"tl.reduce(({acc}, {acc}_index), 1, _{kind})[1][:, None]", torch.int64)
    combine = {"sum": f"{acc} + {masked}", "prod": f"{acc} * {masked}",
               "max": f"_max_nan({acc}, {masked})", "min": f"_min_nan({acc}, {masked})",
               "any": f"tl.maximum({acc}, {masked})", "all": f"tl.minimum({acc}, {masked})"}[kind]
    final = {"sum": "_add", "prod": "_prod", "max": "_max_nan", "min": "_min_nan", "any": "_maximum",
             "all": "_minimum"}[kind]
    final = f"tl.reduce({acc}, 1, {final})"
    result = Var(f"{final}[:, None]", acc_dtype)
    if kind in ("any", "all"):
        result = Var(f"({final}[:, None] != 0)", torch.bool)
    return before, [f"{acc} = {combine}"], result


def _scan(ops: TritonOps, node, value: Var, acc: str, full_index) -> tuple:
    """(lines before the loop, lines of each step) of a prefix sum/product: each block is
    scanned and combined with the running total of the blocks before it."""
    kind, dtype = node.data.reduction_type, compute_dtype(node.data.dtype)
    if value.dtype != dtype:
        value = ops.to_dtype(value, dtype)
    init = _init(kind, dtype)
    masked = f"tl.where(xmask & rmask, {value}, {init})"
    combine = {"sum": "_add", "prod": "_prod", "logsumexp": "_logaddexp"}[kind]
    join = {"sum": "{} + {}", "prod": "{} * {}", "logsumexp": "_logaddexp({}, {})"}[kind].format
    with ops.scope() as stored:
        ops.store(node.name, node.layout.index(full_index), Var(f"{acc}_prefix", dtype), node.get_dtype())
    step = [f"{acc}_block = {masked}",
            f"{acc}_prefix = " + join(f"tl.associative_scan({acc}_block, 1, {combine})", acc)]
    step += stored + [f"{acc} = " + join(acc, f"tl.reduce({acc}_block, 1, {combine})[:, None]")]
    return [f"{acc} = tl.full([XBLOCK, 1], {init}, {TL_DTYPE[dtype]})"], step


def _finish(ops: TritonOps, node, group: Group, index, value: Var) -> list:
    """The row's result: through the epilogue, then stored or kept in registers."""
    with ops.scope() as lines:
        result = ops._emit(str(value), value.dtype)
        if node.data.epilogue is not None:
            result = node.data.epilogue(result)
        if node.name in group.local:
            ops.define_local(node.name, result, node.get_dtype())
        else:
            ops.store(node.name, node.layout.index(index), result, node.get_dtype())
    return lines


def _init(kind: str, dtype: torch.dtype) -> str:
    value = _INIT[kind]
    if not dtype.is_floating_point and value in (float("inf"), float("-inf")):
        info = torch.iinfo(dtype) if dtype != torch.bool else None
        value = (info.min if value < 0 else info.max) if info else int(value > 0)
    return literal(value, dtype)
