"""The flash attention template: SDPA (``ir.ATTENTIONS``, traced on CPU inputs as
``_scaled_dot_product_flash_attention_for_cpu`` and its backward) as one Triton kernel each way,
in the plan's ``tiling.AttentionTiling``, never writing the [L, S] score matrix.

Forward: a program per (batch·head, BR query rows) steps through the keys in BC blocks with an
online softmax — a running max m and sum l per row, the fp32 accumulator rescaled by
exp(m_old - m_new) — and stores the output and the row's logsumexp (for the backward).  A
causal program stops at its last row's diagonal (later blocks are fully masked); the
additive mask (a boolean one arrives as 0/-inf) is read through its broadcast strides; a row
every key of which is masked gives 0 and a logsumexp of 0, as ATen's CPU kernel does.  GQA
reads query head h's keys from KV head h // (heads / kv_heads): the index map, no copy.

Backward, one launch in two roles: the first programs each own a BC block of keys of one KV
head and accumulate dK and dV over every query block of the query heads sharing it; the rest
each own a BR block of queries and accumulate dQ.  Both recompute P = exp(S - lse) from the
saved logsumexp and dS = P (dP - delta), delta = rowsum(dO · O), so nothing of size [L, S]
reaches memory and no atomics are needed.

fp32 dots stay IEEE (as eager); 16-bit inputs feed P and dS to the matrix units in their dtype,
as FlashAttention does, and accumulate in fp32."""
from __future__ import annotations

import math

import sympy
import torch

from .. import symbolic
from ..planning.plan import KernelPlan
from .triton_ops import TritonOps, narrow

# the block indices the template's text names: batch, query head, KV head; query rows [BR, 1] and
# columns [1, BR]; keys as columns [1, BC] and rows [BC, 1]; the head dim as columns and rows
_SYMBOLS = ("i0", "i1", "ik", "rq", "rqc", "rk", "kk", "rd", "kd")
_BLOCKS = _SYMBOLS[3:]


def render_attention(kernel: KernelPlan, program_id) -> tuple:
    """(ops handler, body lines, block sizes, grid, launch checks) of ``kernel``'s attention
    call in its tile; ``program_id(axis)``: the program id as the kernel's index width wants
    it.  A symbolic head dim was planned at its size hint: a launch checks that its block holds it."""
    call, tile = kernel.group.matmul, kernel.attention_tile
    ops = TritonOps()
    template = _Template(ops, call, tile, "backward" in str(call.op))
    body = template.backward(program_id) if template.is_backward else template.forward(program_id)
    head_dim = sympy.sympify(template.head_dim)
    checks = () if head_dim.is_number else (
        (head_dim, tile.bd, f"generated attention was planned for head dims up to {tile.bd}"),)
    return ops, body, {"BR": tile.br, "BC": tile.bc, "BD": tile.bd}, template.grid, checks


class _Template:
    """One attention call's kernel text: its operands, sizes (sympy) and scale."""

    def __init__(self, ops: TritonOps, call, tile, backward: bool):
        self.ops, self.tile, self.is_backward = ops, tile, backward
        args = call.args
        if backward:
            self.dout, self.q, self.k, self.v, self.out, self.lse = args[:6]
            self.causal = bool(args[7])
            self.dq, self.dk, self.dv = call.outputs
        else:
            self.q, self.k, self.v = args[:3]
            self.causal = bool(args[4]) if len(args) > 4 else False
            self.out, self.lse = call.outputs
        self.mask = call.kwargs.get("attn_mask")
        batch, heads, queries, head_dim = self.q.layout.size
        kv_heads, keys = self.k.layout.size[1:3]
        self.batch, self.heads, self.kv_heads, self.queries, self.keys = batch, heads, kv_heads, queries, keys
        self.head_dim = head_dim
        self.group = symbolic.FloorDiv(heads, kv_heads)   # query heads per KV head
        scale = call.kwargs.get("scale")
        if scale is None and sympy.sympify(head_dim).is_number:
            scale = 1 / math.sqrt(int(head_dim))
        self.scale = repr(float(scale)) if scale is not None else \
            f"(1.0 / tl.sqrt(({self._text(head_dim)}).to(tl.float32)))"  # a symbolic head dim's default
        self.ieee = self.q.get_dtype() == torch.float32   # fp32 stays IEEE, as in eager (no TF32)
        self.sym = {name: sympy.Symbol(name, integer=True, nonnegative=True) for name in _SYMBOLS}
        self.grid: tuple = ()

    # ------------------------------------------------------------- addresses and loads
    def _text(self, expr) -> str:
        return self.ops.index(expr)

    def _address(self, layout, index) -> str:
        """The offset at ``index`` (sympy, one per dim) as a block of every block index in it:
        a size-1 dim drops its index from the address, which must still span the block."""
        expr = sympy.sympify(layout.index(list(index)))
        blocks = [v for v in index if isinstance(v, sympy.Symbol) and v.name in _BLOCKS]
        missing = [v.name for v in blocks if v not in expr.free_symbols]
        return self._text(expr) + (f" + 0 * ({' + '.join(missing)})" if missing else "")

    def _load(self, value, index: tuple, mask: str) -> str:
        name = value.buffer.name
        self.ops.loads.setdefault(name, value.get_dtype())
        return f"tl.load({name} + ({self._address(value.layout, index)}), mask={mask}, other=0)"

    def _store(self, buffer, index: tuple, value: str, mask: str) -> str:
        self.ops.stores.setdefault(buffer.name, buffer.get_dtype())
        text = self._address(buffer.layout, index)
        return f"tl.store({buffer.name} + ({text}), {narrow(value, buffer.get_dtype())}, mask={mask})"

    def _operand(self, name: str) -> str:
        """An fp32 block rounded to the inputs' dtype for ``tl.dot`` (as flash attention does)."""
        return narrow(name, self.q.get_dtype())

    def _mask_term(self, head, query, key, inside: str) -> list:
        """The additive mask's block at (query, key), added to ``s`` (it broadcasts over batch
        and heads: a size-1 dim, or a missing one, reads index 0)."""
        if self.mask is None:
            return []
        size = self.mask.layout.size
        full = [self.sym["i0"], head, query, key][-len(size):] if size else []
        index = [0 if sympy.sympify(n) == 1 else var for n, var in zip(size, full)]
        name = self.mask.buffer.name
        self.ops.loads.setdefault(name, self.mask.get_dtype())
        offset = self._text(self.mask.layout.index(index)) if index else "0"
        return [f"s += tl.load({name} + ({offset} + 0 * ({query} + {key})), mask={inside}, other=0).to(tl.float32)"]

    def _scores(self, head, query, key, left: str, right: str, inside: str, causal: str) -> list:
        """``s``: the scaled (and masked) scores ``left @ right``, -inf where a key is out of
        range, causally masked or masked; ``inside``: the block's in-range mask."""
        lines = [f"s = _dot({left}, {right}, {self.ieee}) * {self.scale}"]
        lines += self._mask_term(head, query, key, inside)
        valid = inside + (f" & ({causal})" if self.causal else "")
        return lines + [f"s = tl.where({valid}, s, float(\"-inf\"))"]

    # ------------------------------------------------------------- forward
    def forward(self, program_id) -> list:
        i0, i1, ik, rq, _, rk, kk, rd, kd = (self.sym[n] for n in _SYMBOLS)
        L, S, D = self._text(self.queries), self._text(self.keys), self._text(self.head_dim)
        head_of = [f"i0 = {program_id(1)} // {self._text(self.heads)}",
                   f"i1 = {program_id(1)} % {self._text(self.heads)}",
                   f"ik = i1 // {self._text(self.group)}"]
        end = f"tl.minimum({S}, ({program_id(0)} + 1) * BR)" if self.causal else S
        body = head_of + [
            f"rq = {program_id(0)} * BR + tl.arange(0, BR)[:, None]",
            "rd = tl.arange(0, BD)[None, :]",
            "kd = tl.arange(0, BD)[:, None]",
            f"qmask = (rq < {L}) & (rd < {D})",
            f"q = {self._load(self.q, (i0, i1, rq, rd), 'qmask')}",
            "m = tl.full([BR, 1], float(\"-inf\"), tl.float32)",
            "l = tl.full([BR, 1], 0, tl.float32)",
            "acc = tl.full([BR, BD], 0, tl.float32)",
            f"for start in range(0, {end}, BC):",
        ]
        step = ["rk = start + tl.arange(0, BC)[None, :]",
                f"kt = {self._load(self.k, (i0, ik, rk, kd), f'(rk < {S}) & (kd < {D})')}"]
        step += self._scores(i1, rq, rk, "q", "kt", f"(rq < {L}) & (rk < {S})", "rk <= rq")
        step += ["m_new = tl.maximum(m, tl.reduce(s, 1, _maximum)[:, None])",
                 "m_use = tl.where(m_new == float(\"-inf\"), 0, m_new)",  # a row masked so far holds no terms
                 "p = tl.exp(s - m_use)",
                 "alpha = tl.exp(m - m_use)",
                 "l = l * alpha + tl.reduce(p, 1, _add)[:, None]",
                 "kk = start + tl.arange(0, BC)[:, None]",
                 f"v = {self._load(self.v, (i0, ik, kk, rd), f'(kk < {S}) & (rd < {D})')}",
                 f"acc = acc * alpha + _dot({self._operand('p')}, v, {self.ieee})",
                 "m = m_new"]
        body += ["    " + line for line in step]
        body += ["o = tl.where(l > 0, acc / tl.where(l > 0, l, 1), 0)",
                 self._store(self.out, (i0, i1, rq, rd), "o", "qmask"),
                 self._store(self.lse, (i0, i1, rq), "tl.where(l > 0, m + tl.log(tl.where(l > 0, l, 1)), 0)",
                             f"rq < {L}")]
        self.grid = (symbolic.FloorDiv(self.queries + self.tile.br - 1, self.tile.br), self.batch * self.heads)
        return body

    # ------------------------------------------------------------- backward
    def backward(self, program_id) -> list:
        i0, i1, ik, rq, rqc, rk, kk, rd, kd = (self.sym[n] for n in _SYMBOLS)
        L, S, D = self._text(self.queries), self._text(self.keys), self._text(self.head_dim)
        H, HK, G = self._text(self.heads), self._text(self.kv_heads), self._text(self.group)
        key_blocks = symbolic.FloorDiv(self.keys + self.tile.bc - 1, self.tile.bc)
        query_blocks = symbolic.FloorDiv(self.queries + self.tile.br - 1, self.tile.br)
        kv_programs = self.batch * self.kv_heads * key_blocks
        self.grid = (kv_programs + self.batch * self.heads * query_blocks,)
        pid = program_id(0)
        body = [f"pid = {pid}", "rd = tl.arange(0, BD)[None, :]", "kd = tl.arange(0, BD)[:, None]",
                f"if pid < {self._text(kv_programs)}:"]
        # dK, dV of one key block of one KV head, over the query heads sharing it (scores transposed: [BC, BR])
        start = "(kstart // BR) * BR" if self.causal else "0"
        kv = [f"kblocks = {self._text(key_blocks)}",
              "kstart = (pid % kblocks) * BC",
              f"i0 = pid // kblocks // {HK}",
              f"ik = pid // kblocks % {HK}",
              "kk = kstart + tl.arange(0, BC)[:, None]",
              f"kmask = (kk < {S}) & (rd < {D})",
              f"k = {self._load(self.k, (i0, ik, kk, rd), 'kmask')}",
              f"v = {self._load(self.v, (i0, ik, kk, rd), 'kmask')}",
              "dk = tl.full([BC, BD], 0, tl.float32)",
              "dv = tl.full([BC, BD], 0, tl.float32)",
              f"for g in range(0, {G}):",
              f"    i1 = ik * {G} + g",
              f"    for qstart in range({start}, {L}, BR):"]
        inner = ["rqc = qstart + tl.arange(0, BR)[None, :]",
                 "rq = qstart + tl.arange(0, BR)[:, None]",
                 f"qmask = (rq < {L}) & (rd < {D})",
                 f"q = {self._load(self.q, (i0, i1, rq, rd), 'qmask')}",
                 f"do = {self._load(self.dout, (i0, i1, rq, rd), 'qmask')}",
                 f"o = {self._load(self.out, (i0, i1, rq, rd), 'qmask')}",
                 "delta = tl.reduce(do.to(tl.float32) * o.to(tl.float32), 1, _add)[None, :]",
                 f"lse = {self._load(self.lse, (i0, i1, rqc), f'rqc < {L}')}"]
        inner += self._scores(i1, rqc, kk, "k", "tl.trans(q)", f"(rqc < {L}) & (kk < {S})", "kk <= rqc")
        inner += ["p = tl.exp(s - lse)",
                  f"dv += _dot({self._operand('p')}, do, {self.ieee})",
                  f"dp = _dot(v, tl.trans(do), {self.ieee})",
                  "ds = p * (dp - delta)",
                  f"dk += _dot({self._operand('ds')}, q, {self.ieee})"]
        kv += ["        " + line for line in inner]
        kv += [self._store(self.dk, (i0, ik, kk, rd), f"dk * {self.scale}", "kmask"),
               self._store(self.dv, (i0, ik, kk, rd), "dv", "kmask")]
        body += ["    " + line for line in kv] + ["else:"]
        # dQ of one query block of one query head
        end = f"tl.minimum({S}, qstart + BR)" if self.causal else S
        dq = [f"qpid = pid - {self._text(kv_programs)}",
              f"qblocks = {self._text(query_blocks)}",
              "qstart = (qpid % qblocks) * BR",
              f"i0 = qpid // qblocks // {H}",
              f"i1 = qpid // qblocks % {H}",
              f"ik = i1 // {G}",
              "rq = qstart + tl.arange(0, BR)[:, None]",
              f"qmask = (rq < {L}) & (rd < {D})",
              f"q = {self._load(self.q, (i0, i1, rq, rd), 'qmask')}",
              f"do = {self._load(self.dout, (i0, i1, rq, rd), 'qmask')}",
              f"o = {self._load(self.out, (i0, i1, rq, rd), 'qmask')}",
              "delta = tl.reduce(do.to(tl.float32) * o.to(tl.float32), 1, _add)[:, None]",
              f"lse = {self._load(self.lse, (i0, i1, rq), f'rq < {L}')}",
              "dq = tl.full([BR, BD], 0, tl.float32)",
              f"for kstart in range(0, {end}, BC):"]
        step = ["rk = kstart + tl.arange(0, BC)[None, :]",
                "kk = kstart + tl.arange(0, BC)[:, None]",
                f"kt = {self._load(self.k, (i0, ik, rk, kd), f'(rk < {S}) & (kd < {D})')}",
                f"vt = {self._load(self.v, (i0, ik, rk, kd), f'(rk < {S}) & (kd < {D})')}",
                f"k = {self._load(self.k, (i0, ik, kk, rd), f'(kk < {S}) & (rd < {D})')}"]
        step += self._scores(i1, rq, rk, "q", "kt", f"(rq < {L}) & (rk < {S})", "rk <= rq")
        step += ["p = tl.exp(s - lse)",
                 f"dp = _dot(do, vt, {self.ieee})",
                 "ds = p * (dp - delta)",
                 f"dq += _dot({self._operand('ds')}, k, {self.ieee})"]
        dq += ["    " + line for line in step]
        dq += [self._store(self.dq, (i0, i1, rq, rd), f"dq * {self.scale}", "qmask")]
        body += ["    " + line for line in dq]
        return body
