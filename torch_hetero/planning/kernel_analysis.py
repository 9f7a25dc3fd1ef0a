"""What a kernel does, independent of any device: FLOPs and bytes moved.

Re-runs a node's inner function under a counting ``ops`` handler (the same trick codegen
uses), once, on symbolic indices; counts scale by the iteration count.  Bytes are the
distinct elements each buffer's loads can touch — a broadcast operand is read once, not once
per output element — capped by the buffer's size.  Loads whose index steps by more than one
element along the innermost loop are counted apart (``strided``): each such access costs a
whole cache line or memory sector, which is what makes a transposing copy slow."""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import sympy
import torch

from .. import ir, symbolic
from ..device_models.host_ops import ARITH, INFINITE_PRICED, INLINE, REDUCTION_STEPS
from ..ops_protocol import MATH, PREDICATES, TRANSCENDENTAL, OpsHandler
from ..virtualized import set_ops_handler
from .loop_nest import Group, inner_ranges, node_indices, split_vars
from .loop_plan import LoopPlan, NodeLoops, plan_loops
from .online import online_pair

# One transcendental evaluation (``ops_protocol.TRANSCENDENTAL``): its cost in vector FLOPs on
# vector targets.  On the host C++ target each priced op (``host_ops``: transcendentals,
# division, select, and every other op as ``arith``) is counted by name, and the cost model
# prices it with what the host measured.
TRANSCENDENTAL_FLOPS = 8
# A load whose index divides or takes the remainder of the innermost loop variable (a view
# across a reshape) is computed per element in scalar code: counted as this op.
DIVMOD_INDEX = "divmod_index"


@dataclasses.dataclass(frozen=True)
class KernelCost:
    flops: float
    transcendentals: float  # transcendental evaluations (exp, erf, Bessel...): their cost depends on the target
    calls: dict            # (host_ops name, "vector" | "scalar") → evaluations, as the host's loops make them
    reads: dict            # buffer name → bytes read
    writes: dict           # buffer name → bytes written
    parallel_chunks: int   # iterations the host's OpenMP loop splits across cores (1: serial)
    outputs: float = 1.0   # elements written: what a GPU-style target splits into blocks
    reduction: bool = False
    strided: dict = dataclasses.field(default_factory=dict)  # name → elements loaded with a non-unit innermost stride
    serial_combines: float = 0.0  # reduced elements combined in a serial chain (host: not vectorized)
    rows: float = 1.0             # iterations of the kernel's outer loops
    row_elements: float = 1.0     # the longest inner loop
    row_bytes: float = 0.0        # what one outer iteration's inner loops touch: the working set
    reread: dict = dataclasses.field(default_factory=dict)  # name → bytes read again by later passes
    loops: Optional[LoopPlan] = None  # the host loops these counts are of: what codegen.cpp emits
    online: object = None         # the OnlinePair of reductions one pass can compute (``online``)
    online_saved: dict = dataclasses.field(default_factory=dict)  # name → bytes that pass does not re-read

    @property
    def bytes(self) -> float:
        return sum(self.reads.values()) + sum(self.writes.values())


class _Value:
    """A value's dtype; whether it changes along the innermost loop (``moving``: g++ hoists
    what does not); whether it is a reduction the kernel keeps in a variable (``kept``: the
    C++ code divides by one as a multiply by its hoisted reciprocal, ``CppOps.truediv``);
    whether it may be infinite (``infinite``: an infinite constant flowed into it, as a
    mask's -inf does: a vectorized transcendental then takes its slow path, ``host_ops.INFINITE_PRICED``)."""
    __slots__ = ("dtype", "moving", "kept", "infinite")

    def __init__(self, dtype, moving: bool = False, kept: bool = False, infinite: bool = False):
        self.dtype, self.moving, self.kept, self.infinite = dtype, moving, kept, infinite


def _infinite(value) -> bool:
    return isinstance(value, (int, float)) and math.isinf(value)


class CountingOps(OpsHandler):
    """Counts what one iteration of a node's loops evaluates and loads; every op that computes
    a value is counted alike (``_counted``)."""
    GENERATED = {"_counted": tuple(sorted(MATH))}

    def __init__(self, ranges: dict, innermost, hints: dict, kept: frozenset = frozenset()):
        self.ranges = ranges
        self.kept = kept               # reductions the kernel keeps in variables (Group.local, .reread)
        self.innermost = innermost     # the loop variable of the innermost loop (None: no loop)
        self.hints = hints
        self.strided: dict = {}        # name → distinct elements loaded with a non-unit stride
        self.divmod_loads = 0          # loads per iteration whose index divides the innermost variable
        self.moving: set = set()       # buffers whose loads move with the innermost loop
        self.ops = 0
        self.arith = 0                 # ops per iteration priced as plain arithmetic (host_ops.ARITH)
        self.transcendentals = 0
        self.calls: dict = {}          # (priced op (host_ops), on a maybe-infinite argument) → evaluations per iteration
        self.masked_depth = 0
        self.branch_transcendentals = 0          # transcendental calls inside masked regions: no SIMD variant runs there
        self.loads: dict = {}          # name → (distinct elements, dtype)
        self.indirect: dict = {}       # symbol → bound
        self.indices: list = []        # every load's index

    def _touched(self, index) -> sympy.Expr:
        count = sympy.Integer(1)
        for s in sympy.sympify(index).free_symbols:
            count *= self.ranges.get(s, self.indirect.get(s, 1))
        return count

    def load(self, name, index, dtype):
        index = symbolic.simplify_index(sympy.sympify(index), self.ranges)
        touched = self._touched(index)
        if self.innermost in index.free_symbols:
            self.moving.add(name)
        previous = self.loads.get(name, (0, dtype))[0]
        self.loads[name] = (sympy.Max(previous, touched) if previous != 0 else touched, dtype)
        self.indices.append(index)
        if abs(stride_along(index, self.innermost, self.hints)) > 1:
            self.strided[name] = touched
        elif any(self.innermost in f.free_symbols for f in index.atoms(symbolic.FloorDiv, symbolic.ModularIndexing)):
            self.divmod_loads += 1
        return _Value(dtype, self.innermost in index.free_symbols, name in self.kept)

    def store(self, name, index, value, dtype, mode=None):
        return None

    def constant(self, value, dtype):
        return _Value(dtype, infinite=_infinite(value))

    def index_expr(self, expr, dtype):
        return _Value(dtype, self.innermost in sympy.sympify(expr).free_symbols)

    def to_dtype(self, x, dtype):
        return _Value(dtype, x.moving)

    def indirect_indexing(self, value, size):
        symbol = sympy.Symbol(f"indirect{len(self.indirect)}", integer=True)
        self.indirect[symbol] = size
        return symbol

    def masked(self, mask, body, other, dtype):
        self.masked_depth += 1
        result = body()
        self.masked_depth -= 1
        body_value = result if isinstance(result, _Value) else _Value(dtype)
        return _Value(dtype, body_value.moving, infinite=body_value.infinite or _infinite(other))

    @staticmethod
    def _divides_per_element(name: str, args) -> bool:
        """A division g++ leaves in the loop: not one of loop-invariant values (hoisted), nor
        one by a kept reduction (``CppOps.truediv`` multiplies by its hoisted reciprocal)."""
        dividend, divisor = (args[0], args[1]) if name == "truediv" else (None, args[0])
        return divisor.moving or dividend is not None and dividend.moving and not divisor.kept

    def _counted(self, name, *args):
        values = [a for a in args if isinstance(a, _Value)]
        self.ops += TRANSCENDENTAL_FLOPS if name in TRANSCENDENTAL else 1
        self.transcendentals += name in TRANSCENDENTAL
        if name in ("truediv", "reciprocal"):
            priced = "truediv" if self._divides_per_element(name, args) else None
        else:
            priced = name if name in TRANSCENDENTAL or name == "where" else None
        infinite = any(v.infinite for v in values)
        if priced:
            key = (priced, infinite and priced in INFINITE_PRICED)
            self.calls[key] = self.calls.get(key, 0) + 1
        elif name not in TRANSCENDENTAL:  # a hoisted division is a multiply
            self.arith += 1
        self.branch_transcendentals += bool(self.masked_depth and name in TRANSCENDENTAL and name not in INLINE)
        predicate = name in PREDICATES
        dtype = torch.bool if predicate else (values[0].dtype if values else torch.float32)
        # a transcendental's result is taken as finite (exp(-inf) = 0), a predicate's is a bool
        return _Value(dtype, any(v.moving for v in values),
                      infinite=infinite and not predicate and name not in TRANSCENDENTAL)


def stride_along(index, var, hints: dict) -> int:
    """How far (in elements) consecutive values of loop variable ``var`` move ``index``
    (0 when it does not move it, or by an amount unknown until run time)."""
    index = sympy.sympify(index)
    if var is None or var not in index.free_symbols:
        return 0
    terms = index.as_coefficients_dict()
    if all(term == var or var not in term.free_symbols for term in terms):
        step = sympy.sympify(terms.get(var, 0)).subs(hints)
        return int(step) if step.is_number else 0
    origin = {s: 0 for s in index.free_symbols if s not in hints}
    step = (index.subs({**origin, var: 1}) - index.subs(origin)).subs(hints)
    return int(step) if step.is_number else 0


COLUMN_KINDS = ("sum", "prod", "max", "min")


def column_reduction(node, outer: tuple, hints: dict) -> bool:
    """A reduction over a dim its input is strided along, contiguous along its last output
    dim (a sum over rows: bias and layer-norm weight gradients, batch statistics).  The host runs it with the
    reduction loop outside and the output dim inside, vectorized, one accumulator per output:
    the order of ATen's CPU kernel for such reductions (row by row)."""
    data = node.data
    inner = inner_ranges(node, outer) if type(data) is ir.Reduction and outer else None
    if not inner or data.reduction_type not in COLUMN_KINDS:
        return False
    outer_vars = list(symbolic.index_symbols("o", len(outer)))
    inner_vars = list(symbolic.index_symbols("x", len(inner)))
    counter = CountingOps(dict(zip(outer_vars + inner_vars, outer + inner)), inner_vars[-1], hints)
    index, rindex = node_indices(node, outer_vars, outer, inner_vars)
    with set_ops_handler(counter):
        data.inner_fn(index, rindex)
    strides = [(stride_along(i, outer_vars[-1], hints), stride_along(i, inner_vars[-1], hints))
               for i in counter.indices]
    # every load walks the outputs contiguously or strides along the rows; a per-row value
    # (layer norm's mean and rstd in its weight gradient) is one scalar per row either way.  A
    # data-dependent index counts as a constant here (an MoE's top-k experts, the short sum of
    # the rows it gathers): only the loop order follows, never the result
    return any(last == 1 for last, _ in strides) and \
        all(abs(r) != 1 or last == 0 for last, r in strides)


@dataclasses.dataclass(frozen=True)
class _NodeCounts:
    """One node's share of a kernel: per-iteration counts, its iterations, what it loads."""
    ops: int
    transcendentals: int
    calls: dict      # (priced op, "vector" | "scalar") → evaluations
    serial: bool
    iterations: float
    inner: float     # iterations of its inner loop
    loads: dict      # name → (bytes it can touch, capped by the buffer)
    strided: dict    # name → elements loaded with a non-unit innermost stride
    row_loads: dict  # name → bytes per element, for loads that move with the inner loop


def analyze(group: Group, storage: dict, hints: dict, memo: dict | None = None) -> KernelCost:
    """Cost of one kernel: a group of nodes in one loop nest (``loop_nest``).  ``storage``:
    buffer name → (numel, dtype) for every buffer the graph knows; ``hints``: size symbol →
    example value (for dynamic shapes); ``memo``: per-node loops and counts kept between calls.
    Buffers written inside the kernel are re-read from registers or cache, not memory;
    ``group.local`` ones are never written."""
    memo = {} if memo is None else memo
    loops = plan_loops(group, memo)
    written = set(group.names)
    flops = transcendentals = serial = 0.0
    calls: dict = {}
    reads: dict = {}
    passes: dict = {}
    strided: dict = {}
    row: dict = {}       # buffer → bytes per inner element, for everything a row iteration touches
    row_elements = 1.0
    online = online_pair(group)
    online_saved: dict = {}
    for node, node_loops in zip(group.nodes, loops.nodes):
        kept = frozenset(group.local | group.reread)
        key = ("counts", node.name, group.outer, group.column, kept)
        if key not in memo:
            memo[key] = _count(node, node_loops, group.outer, storage, hints, group.column, kept)
        counts = memo[key]
        flops += counts.ops * counts.iterations
        transcendentals += counts.transcendentals * counts.iterations
        for key, count in counts.calls.items():
            calls[key] = calls.get(key, 0.0) + count
        serial += counts.iterations if counts.serial else 0.0
        row_elements = max(row_elements, counts.inner)
        row.update(counts.row_loads)
        if isinstance(node.data, ir.Pointwise) and counts.inner > 1:
            row[node.name] = node.get_dtype().itemsize  # it stores a row
        for name, nbytes in counts.loads.items():
            if name not in written:
                reads[name] = max(reads.get(name, 0.0), nbytes)
                passes[name] = passes.get(name, 0.0) + nbytes
                if online and node.name == online.first:  # the max's (mean's) pass is the sum's
                    online_saved[name] = nbytes
        for name, elements in counts.strided.items():
            if name not in written:
                strided[name] = max(strided.get(name, 0.0), elements)
    writes = {n.name: _evaluate(symbolic.product(n.data.ranges), hints) * n.get_dtype().itemsize
              for n in group.stored}
    reduction = any(isinstance(n.data, ir.Reduction) for n in group.nodes)
    outputs = _evaluate(symbolic.product(group.outer), hints) if reduction else \
        max((_evaluate(symbolic.product(n.data.ranges), hints) for n in group.nodes), default=0)  # a lone GEMM: none
    chunks = int(_evaluate(loops.parallel_iterations, hints))
    reread = {name: passes[name] - reads[name] for name in reads if passes[name] > reads[name]}
    rows = _evaluate(symbolic.product(group.outer), hints)
    return KernelCost(flops, transcendentals, calls, reads, writes, max(chunks, 1), outputs, reduction,
                      strided, serial, rows, row_elements, row_elements * sum(row.values()), reread, loops,
                      online, online_saved)


def _count(node, loops: NodeLoops, outer: tuple, storage: dict, hints: dict, column: bool,
           kept: frozenset) -> _NodeCounts:
    """``loops``: the node's (``loop_plan``); ``column``: a column reduction (see
    ``column_reduction``), whose innermost loop is its last output dim, as is a node vectorized
    along its outer loop (``NodeLoops.outer_lanes``); ``kept``: the kernel's reductions held in
    variables."""
    outer_vars = list(symbolic.index_symbols("o", len(outer)))
    inner, split, serial = loops.inner, loops.split, loops.serial
    inner_vars = list(symbolic.index_symbols("x", len(inner)))
    variables = outer_vars + inner_vars
    innermost = outer_vars[-1] if column or loops.outer_lanes else (variables[-1] if variables else None)
    counter = CountingOps(dict(zip(variables, outer + inner)), innermost, hints, kept)
    index, rindex = node_indices(node, outer_vars, outer, split_vars(inner_vars, split))
    data = node.data
    with set_ops_handler(counter):
        if isinstance(data, ir.Scatter):
            data.output_index(index)
        if isinstance(data, ir.Pointwise):
            data.inner_fn(index)
        else:
            data.inner_fn(index, rindex)
            counter.ops += 1  # the combine step
    total = _evaluate(symbolic.product(outer + inner), hints)
    row_loads = {name: dtype.itemsize for name, (_, dtype) in counter.loads.items()
                 if name in counter.moving} if inner_vars else {}
    loads = {}
    for name, (touched, dtype) in counter.loads.items():
        numel, _ = storage.get(name, (touched, dtype))
        loads[name] = min(_evaluate(touched, hints), _evaluate(numel, hints), total) * dtype.itemsize
    # g++ vectorizes a simd loop (selects are if-converted) unless a transcendental call sits in
    # a masked branch (libmvec has no masked variants)
    vectorized = loops.vectorized and not counter.branch_transcendentals
    kind = "vector" if vectorized else "scalar"
    calls: dict = {}
    for (op, infinite), count in counter.calls.items():
        key = (op, "vector_inf" if infinite and vectorized else kind)
        calls[key] = calls.get(key, 0.0) + count * total
    if not isinstance(data, ir.Pointwise):  # the combine: a row reduction's step, else arithmetic
        step = REDUCTION_STEPS.get(data.reduction_type) if type(data) is ir.Reduction and not column \
            and not serial and data.dtype.is_floating_point else None
        if step:
            calls[(step, kind)] = total
        else:
            counter.arith += 1
    if counter.arith:
        calls[(ARITH, kind)] = counter.arith * total
    if counter.divmod_loads:
        calls[(DIVMOD_INDEX, "scalar")] = counter.divmod_loads * total
    return _NodeCounts(counter.ops, counter.transcendentals, calls, serial, total,
                       _evaluate(symbolic.product(inner), hints), loads,
                       {name: min(_evaluate(t, hints), total) for name, t in counter.strided.items()}, row_loads)


def extern_traffic(call: ir.ExternCall, hints: dict, keep_output: bool = True) -> tuple:
    """(reads, writes) of an ATen call: bytes per buffer of its tensor arguments (keyword
    ones too: an attention's mask) and, with ``keep_output``, of its outputs."""
    reads: dict = {}
    for t in (a for a in [*call.args, *call.kwargs.values()] if isinstance(a, ir.StridedValue)):
        reads[t.buffer.name] = reads.get(t.buffer.name, 0) + int(_evaluate(symbolic.product(t.layout.size), hints)) \
            * t.get_dtype().itemsize
    writes = {b.name: int(_evaluate(symbolic.product(b.layout.size), hints)) * b.get_dtype().itemsize
              for b in call.outputs if b is not None and keep_output}
    return reads, writes


def _evaluate(expr, hints: dict) -> float:
    return float(expr) if isinstance(expr, (int, float)) else float(sympy.sympify(expr).subs(hints))
