"""What a kernel does, independent of any device: FLOPs and bytes moved.

Re-runs a node's inner function under a counting ``ops`` handler (the same trick codegen
uses), once, on symbolic indices; counts scale by the iteration count.  Bytes are the
distinct elements each buffer's loads can touch — a broadcast operand is read once, not once
per output element — capped by the buffer's size."""
from __future__ import annotations

import dataclasses

import sympy
import torch

from .. import ir, symbolic
from ..codegen.cpp import parallel_iterations
from ..virtualized import set_ops_handler

# One transcendental evaluation: its cost in vector FLOPs on vector targets, and in cycles of
# a scalar libm call on the host C++ target (glibc, measured order of magnitude on x86-64).
TRANSCENDENTAL_FLOPS = 8
SCALAR_CALL_CYCLES = {"exp": 8, "exp2": 8, "expm1": 12, "log": 10, "log2": 10, "log10": 12, "log1p": 14,
                      "sigmoid": 10, "sin": 12, "cos": 12, "tan": 25, "asin": 25, "acos": 25, "atan": 25,
                      "sinh": 30, "cosh": 30, "tanh": 40, "asinh": 40, "acosh": 40, "atanh": 40,
                      "erf": 40, "erfc": 40, "pow": 40, "atan2": 40, "lgamma": 60}
_TRANSCENDENTAL = set(SCALAR_CALL_CYCLES)  # sqrt/rsqrt are vector instructions
_FREE = {"load", "store", "constant", "index_expr", "to_dtype", "masked", "indirect_indexing"}


@dataclasses.dataclass(frozen=True)
class KernelCost:
    flops: float
    transcendentals: float  # evaluations of exp/log/sin/erf/...: their cost depends on the target
    scalar_call_cycles: float  # their total cost as scalar libm calls, in core cycles
    reads: dict            # buffer name → bytes read
    writes: dict           # buffer name → bytes written
    parallel_chunks: int   # iterations the host's OpenMP loop splits across cores (1: serial)
    outputs: float = 1.0   # elements written: what a GPU-style target splits into blocks
    reduction: bool = False

    @property
    def bytes(self) -> float:
        return sum(self.reads.values()) + sum(self.writes.values())


class _Value:
    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype


class CountingOps:
    def __init__(self, ranges: dict):
        self.ranges = ranges
        self.ops = 0
        self.transcendentals = 0
        self.call_cycles = 0
        self.loads: dict = {}          # name → (distinct elements, dtype)
        self.indirect: dict = {}       # symbol → bound

    def _touched(self, index) -> sympy.Expr:
        count = sympy.Integer(1)
        for s in sympy.sympify(index).free_symbols:
            count *= self.ranges.get(s, self.indirect.get(s, 1))
        return count

    def load(self, name, index, dtype):
        touched = self._touched(index)
        previous = self.loads.get(name, (0, dtype))[0]
        self.loads[name] = (sympy.Max(previous, touched) if previous != 0 else touched, dtype)
        return _Value(dtype)

    def store(self, name, index, value, dtype):
        return None

    def constant(self, value, dtype):
        return _Value(dtype)

    def index_expr(self, expr, dtype):
        return _Value(dtype)

    def to_dtype(self, x, dtype):
        return _Value(dtype)

    def indirect_indexing(self, value, size):
        symbol = sympy.Symbol(f"indirect{len(self.indirect)}", integer=True)
        self.indirect[symbol] = size
        return symbol

    def masked(self, mask, body, other, dtype):
        body()
        return _Value(dtype)

    def __getattr__(self, name):
        def op(*args):
            self.ops += TRANSCENDENTAL_FLOPS if name in _TRANSCENDENTAL else 1
            self.transcendentals += name in _TRANSCENDENTAL
            self.call_cycles += SCALAR_CALL_CYCLES.get(name, 0)
            first = next((a for a in args if isinstance(a, _Value)), None)
            comparison = name in ("eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or",
                                  "logical_xor", "logical_not", "isnan", "isinf")
            return _Value(torch.bool if comparison else (first.dtype if first else torch.float32))
        return op


def analyze(buffer: ir.ComputedBuffer, storage: dict, hints: dict) -> KernelCost:
    """``storage``: buffer name → (numel, dtype) for every buffer the graph knows;
    ``hints``: size symbol → example value (for dynamic shapes)."""
    data = buffer.data
    index = symbolic.index_symbols("i", len(data.ranges))
    ranges = dict(zip(index, data.ranges))
    counter = CountingOps(ranges)
    with set_ops_handler(counter):
        if isinstance(data, ir.Pointwise):
            data.inner_fn(list(index))
            iterations = symbolic.product(data.ranges)
        else:
            rindex = symbolic.index_symbols("r", len(data.reduction_ranges))
            ranges.update(zip(rindex, data.reduction_ranges))
            data.inner_fn(list(index), list(rindex))
            counter.ops += 1  # the combine step
            iterations = symbolic.product(list(data.ranges) + list(data.reduction_ranges))
    evaluate = lambda e: float(sympy.sympify(e).subs(hints)) if not isinstance(e, (int, float)) else float(e)  # noqa: E731
    total = evaluate(iterations)
    reads = {}
    for name, (touched, dtype) in counter.loads.items():
        numel, _ = storage.get(name, (touched, dtype))
        reads[name] = min(evaluate(touched), evaluate(numel), total) * dtype.itemsize
    out_numel = evaluate(symbolic.product(data.ranges))
    writes = {buffer.name: out_numel * buffer.get_dtype().itemsize}
    chunks = int(evaluate(parallel_iterations(data)))
    return KernelCost(counter.ops * total, counter.transcendentals * total, counter.call_cycles * total,
                      reads, writes, max(chunks, 1), out_numel, isinstance(data, ir.Reduction))
