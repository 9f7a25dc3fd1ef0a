"""The grouped GEMM (``aten._grouped_mm`` with ``offs``: an MoE's experts) as one Triton kernel
for all groups, in the plan's matmul tile (``tiling.MatmulTiles``: the shape of one group when
the rows split evenly).  Group ``g`` spans ``[offs[g - 1], offs[g])`` (``offs[-1]`` taken as 0):

* 2-d x 3-d (``out[T, N]``: tokens sorted by expert times each expert's weight): a program
  owns a ``[BM, BN]`` tile of the output and, for each group whose rows meet the tile, runs
  that group's GEMM over the tile with the other rows masked; a tile that crosses a group
  boundary pays one GEMM per group it meets, an empty group none.
* 2-d x 2-d (``out[G, M, N]``: the weights' gradient): program axis 1 is the group, whose
  ``BK`` steps run over its span of the shared dim only; an empty group stores zeros.

Rows past ``offs[-1]`` (2-d x 3-d) are not written, as ATen leaves them."""
from __future__ import annotations

import sympy
import torch

from .. import ir, symbolic
from .code_handler import Var
from .triton_ops import TritonOps


def grouped_mm_body(ops: TritonOps, call, tile, program_id) -> tuple:
    """(lines, grid) of the kernel; ``program_id(axis)`` is the program index's text."""
    a, b, offs = [t for t in call.args if isinstance(t, ir.StridedValue)][:3]
    out = call.outputs[0]
    by_rows = len(b.layout.size) == 3
    group, rm, rn, ka, kb = (sympy.Symbol(v, integer=True, nonnegative=True) for v in ("i0", "rm", "rn", "ka", "kb"))
    m, n = (a.layout.size[0], b.layout.size[-1]) if by_rows else (a.layout.size[0], b.layout.size[1])
    k = a.layout.size[1]
    groups = offs.layout.size[0]
    ops.ranges.update({rm: m, rn: n, ka: k, kb: k, group: groups})
    ops.block = "(rm + rn)"
    for value in (a, b, offs):
        ops.loads.setdefault(value.buffer.name, value.get_dtype())
    ieee = a.get_dtype() == torch.float32  # fp32 stays IEEE, as in eager (no TF32)
    end = f"{offs.buffer.name} + ({ops.index(offs.layout.index([group]))})"
    bounds = [f"start = tl.load({end} - {ops.index(offs.layout.stride[0])}, mask={group} > 0, other=0)",
              f"end = tl.load({end})"]
    body = [f"pid = {program_id(0)}", f"blocks_n = ({ops.index(n)} + BN - 1) // BN",
            "rm = (pid // blocks_n) * BM + tl.arange(0, BM)[:, None]",
            "rn = (pid % blocks_n) * BN + tl.arange(0, BN)[None, :]"]
    if by_rows:
        a_mask, k_end = "rows & (ka < {k})", ops.index(k)
        b_index = b.layout.index([group, kb, rn])
    else:
        a_mask, k_end = f"(rm < {ops.index(m)}) & (ka < end)", "end"
        b_index = b.layout.index([kb, rn])
    steps = ["acc = tl.full([BM, BN], 0, tl.float32)",
             f"for koffset in range({'0' if by_rows else 'start'}, {k_end}, BK):",
             "    ka = koffset + tl.arange(0, BK)[None, :]",
             "    kb = koffset + tl.arange(0, BK)[:, None]",
             f"    a = tl.load({a.buffer.name} + ({ops.index(a.layout.index([rm, ka]))}), "
             f"mask={a_mask.format(k=ops.index(k))}, other=0)",
             f"    b = tl.load({b.buffer.name} + ({ops.index(b_index)}), "
             f"mask=(kb < {k_end}) & (rn < {ops.index(n)}), other=0)",
             f"    acc += _dot(a, b, {ieee})"]
    saved, ops.masks = ops.masks, ["rows & (rn < {})".format(ops.index(n)) if by_rows
                                   else f"(rm < {ops.index(m)}) & (rn < {ops.index(n)})"]
    with ops.scope() as stored:
        ops.store(out.name, out.layout.index([rm, rn] if by_rows else [group, rm, rn]), Var("acc", torch.float32),
                  out.get_dtype())
    ops.masks = saved
    tiles = symbolic.FloorDiv(m + tile.bm - 1, tile.bm) * symbolic.FloorDiv(n + tile.bn - 1, tile.bn)
    if by_rows:
        body += ["first = (pid // blocks_n) * BM",
                 f"for i0 in range(0, {ops.index(groups)}):"] + ["    " + line for line in bounds] + [
                 "    if (start < end) & (start < first + BM) & (end > first):",
                 "        rows = (rm >= start) & (rm < end)"]
        body += ["        " + line for line in steps + stored]
        return body, (tiles,)
    body += [f"i0 = {program_id(1)}"] + bounds + steps + stored
    return body, (tiles, groups)
