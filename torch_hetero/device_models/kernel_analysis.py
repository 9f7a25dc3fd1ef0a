"""What a kernel does, independent of any device: FLOPs and bytes moved.

Re-runs a node's inner function under a counting ``ops`` handler (the same trick codegen
uses), once, on symbolic indices; counts scale by the iteration count.  Bytes are the
distinct elements each buffer's loads can touch — a broadcast operand is read once, not once
per output element — capped by the buffer's size.  Loads whose index steps by more than one
element along the innermost loop are counted apart (``strided``): each such access costs a
whole cache line or memory sector, which is what makes a transposing copy slow."""
from __future__ import annotations

import dataclasses

import sympy
import torch

from .. import ir, symbolic
from ..codegen import special
from ..runtime.cpp_build import vector_libm
from ..loop_nest import Group, host_inner_ranges, inner_ranges, node_indices, split_vars
from ..virtualized import set_ops_handler

# One transcendental evaluation: its cost in vector FLOPs on vector targets, and in cycles of
# a scalar libm call on the host C++ target.  The cycles were measured for float arguments
# drawn from N(0, 1), glibc 2.3x, g++ -O3 -march=native -fno-math-errno, on a Xeon (Sapphire
# Rapids class) at 2.1 GHz; glibc's cost depends on the argument (erff: 8 cycles near 0, 23 at
# |x| ~ 2), so these are typical values, not bounds.  erf, gelu and gelu_grad are the prelude's
# own inline functions (timed against erf in one program: 1.2x its cycles).
TRANSCENDENTAL_FLOPS = 8
SCALAR_CALL_CYCLES = {"exp": 8, "exp2": 9, "expm1": 25, "log": 11, "log2": 11, "log10": 21, "log1p": 24,
                      "sigmoid": 10, "sin": 11, "cos": 10, "tan": 33, "asin": 13, "acos": 14, "atan": 19,
                      "sinh": 39, "cosh": 25, "tanh": 40, "asinh": 37, "acosh": 32, "atanh": 35,
                      "erf": 15, "erfc": 23, "pow": 19, "atan2": 40, "lgamma": 30, "gelu": 18, "gelu_grad": 18}
# The same, where glibc's libmvec is linked (see cpp_prelude.h): cycles per element of a call
# inside a vectorized loop (16 lanes; load and store included), measured on the same Xeon with
# N(0, 1) arguments (|x| + 0.1 for logs, clamped to the domain for asin/acos/atanh/acosh).
# sigmoid inlines expf; pow, atan2 and lgamma stay scalar.
VECTOR_CALL_CYCLES = {"exp": 0.5, "exp2": 0.5, "expm1": 0.6, "log": 0.5, "log2": 0.4, "log10": 0.4,
                      "log1p": 1.0, "sigmoid": 0.6, "sin": 0.6, "cos": 0.6, "tan": 0.9, "asin": 0.8,
                      "acos": 0.9, "atan": 0.9, "sinh": 0.8, "cosh": 0.6, "tanh": 0.7, "asinh": 1.7,
                      "acosh": 1.7, "atanh": 1.2, "erfc": 1.2}
# The prelude's own inline functions: vectorized with or without libmvec; measured as above.
INLINE_VECTOR_CYCLES = {"erf": 1.1, "gelu": 1.2, "gelu_grad": 1.2}
# Reductions the host code cannot vectorize (arg-reductions, any/all, bool max/min) form one
# dependency chain per output: cycles per reduced element (measured as above).
SERIAL_COMBINE_CYCLES = 3
# A load whose index divides or takes the remainder of the innermost loop variable (a view
# across a reshape) is computed per element in scalar code: cycles per element.
DIVMOD_INDEX_CYCLES = 2
# Special functions (``codegen.special``: Bessel, gamma family, polynomials) are series or
# rational approximations of several transcendentals: an assumed cost, not measured.
SPECIAL_CALL_CYCLES = 100
_CALL_CYCLES = {**dict.fromkeys(special.CPP, SPECIAL_CALL_CYCLES), **SCALAR_CALL_CYCLES}
_VECTOR_CYCLES = {**(VECTOR_CALL_CYCLES if vector_libm() else {}), **INLINE_VECTOR_CYCLES}
_VECTOR_REDUCTIONS = {"sum", "prod"}   # of floats; max/min of any dtype but bool (codegen.cpp._extremum)
_TRANSCENDENTAL = set(_CALL_CYCLES)  # sqrt/rsqrt are vector instructions
_FREE = {"load", "store", "constant", "index_expr", "to_dtype", "masked", "indirect_indexing"}


@dataclasses.dataclass(frozen=True)
class KernelCost:
    flops: float
    transcendentals: float  # evaluations of exp/log/sin/erf/...: their cost depends on the target
    scalar_call_cycles: float  # their cost as scalar libm calls (and div/mod indexing), in core cycles
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

    @property
    def bytes(self) -> float:
        return sum(self.reads.values()) + sum(self.writes.values())


class _Value:
    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype


class CountingOps:
    def __init__(self, ranges: dict, innermost, hints: dict):
        self.ranges = ranges
        self.innermost = innermost     # the loop variable of the innermost loop (None: no loop)
        self.hints = hints
        self.strided: dict = {}        # name → distinct elements loaded with a non-unit stride
        self.divmod_loads = 0          # loads per iteration whose index divides the innermost variable
        self.moving: set = set()       # buffers whose loads move with the innermost loop
        self.ops = 0
        self.transcendentals = 0
        self.call_cycles = 0           # libm calls as scalar calls
        self.vector_call_cycles = 0    # the same calls in a vectorized loop
        self.masked_depth = 0
        self.branch_calls = 0          # libm calls inside masked regions: no SIMD variant runs there
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
        return _Value(dtype)

    def store(self, name, index, value, dtype, mode=None):
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
        self.masked_depth += 1
        body()
        self.masked_depth -= 1
        return _Value(dtype)

    def __getattr__(self, name):
        def op(*args):
            self.ops += TRANSCENDENTAL_FLOPS if name in _TRANSCENDENTAL else 1
            self.transcendentals += name in _TRANSCENDENTAL
            self.call_cycles += _CALL_CYCLES.get(name, 0)
            self.vector_call_cycles += _VECTOR_CYCLES.get(name, _CALL_CYCLES.get(name, 0))
            self.branch_calls += bool(self.masked_depth and name in _CALL_CYCLES and name not in INLINE_VECTOR_CYCLES)
            first = next((a for a in args if isinstance(a, _Value)), None)
            comparison = name in ("eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or",
                                  "logical_xor", "logical_not", "isnan", "isinf")
            return _Value(torch.bool if comparison else (first.dtype if first else torch.float32))
        return op


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
    # (layer norm's mean and rstd in its weight gradient) is one scalar per row either way
    return not counter.indirect and any(last == 1 for last, _ in strides) and \
        all(abs(r) != 1 or last == 0 for last, r in strides)


@dataclasses.dataclass(frozen=True)
class _NodeCounts:
    """One node's share of a kernel: per-iteration counts, its iterations, what it loads."""
    ops: int
    transcendentals: int
    scalar_cycles: float
    serial: bool
    iterations: float
    inner: float     # iterations of its inner loop
    loads: dict      # name → (bytes it can touch, capped by the buffer)
    strided: dict    # name → elements loaded with a non-unit innermost stride
    row_loads: dict  # name → bytes per element, for loads that move with the inner loop


def analyze(group: Group, storage: dict, hints: dict, memo: dict | None = None) -> KernelCost:
    """Cost of one kernel: a group of nodes in one loop nest (``loop_nest``).  ``storage``:
    buffer name → (numel, dtype) for every buffer the graph knows; ``hints``: size symbol →
    example value (for dynamic shapes); ``memo``: per-node counts kept between calls.
    Buffers written inside the kernel are re-read from registers or cache, not memory;
    ``group.local`` ones are never written."""
    memo = {} if memo is None else memo
    written = set(group.names)
    flops = transcendentals = scalar_cycles = serial = 0.0
    reads: dict = {}
    passes: dict = {}
    strided: dict = {}
    row: dict = {}       # buffer → bytes per inner element, for everything a row iteration touches
    row_elements = 1.0
    for node in group.nodes:
        key = (node.name, group.outer, group.column)
        if key not in memo:
            memo[key] = _count(node, group.outer, storage, hints, group.column)
        counts = memo[key]
        flops += counts.ops * counts.iterations
        transcendentals += counts.transcendentals * counts.iterations
        scalar_cycles += counts.scalar_cycles
        serial += counts.iterations if counts.serial else 0.0
        row_elements = max(row_elements, counts.inner)
        row.update(counts.row_loads)
        if isinstance(node.data, ir.Pointwise) and counts.inner > 1:
            row[node.name] = node.get_dtype().itemsize  # it stores a row
        for name, nbytes in counts.loads.items():
            if name not in written:
                reads[name] = max(reads.get(name, 0.0), nbytes)
                passes[name] = passes.get(name, 0.0) + nbytes
        for name, elements in counts.strided.items():
            if name not in written:
                strided[name] = max(strided.get(name, 0.0), elements)
    writes = {n.name: _evaluate(symbolic.product(n.data.ranges), hints) * n.get_dtype().itemsize
              for n in group.stored}
    reduction = any(isinstance(n.data, ir.Reduction) for n in group.nodes)
    outputs = _evaluate(symbolic.product(group.outer), hints) if reduction else \
        max(_evaluate(symbolic.product(n.data.ranges), hints) for n in group.nodes)
    chunks = int(_evaluate(group.parallel_iterations(), hints))
    reread = {name: passes[name] - reads[name] for name in reads if passes[name] > reads[name]}
    rows = _evaluate(symbolic.product(group.outer), hints)
    return KernelCost(flops, transcendentals, scalar_cycles, reads, writes, max(chunks, 1), outputs, reduction,
                      strided, serial, rows, row_elements, row_elements * sum(row.values()), reread)


def _count(node, outer: tuple, storage: dict, hints: dict, column: bool = False) -> _NodeCounts:
    """``column``: a column reduction (see ``column_reduction``), whose innermost loop is its
    last output dim."""
    outer_vars = list(symbolic.index_symbols("o", len(outer)))
    inner, split = host_inner_ranges(node, outer)
    inner_vars = list(symbolic.index_symbols("x", len(inner)))
    loops = outer_vars + inner_vars
    innermost = outer_vars[-1] if column else (loops[-1] if loops else None)
    counter = CountingOps(dict(zip(loops, outer + inner)), innermost, hints)
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
    serial = not column and (isinstance(data, ir.Scan) or isinstance(data, ir.Reduction) and not (
        data.reduction_type in _VECTOR_REDUCTIONS and data.dtype.is_floating_point
        or data.reduction_type in ("max", "min") and data.dtype != torch.bool))
    # the host vectorizes a simd-marked inner loop (pointwise, or a sum/prod; selects are
    # if-converted) unless a libm call sits in a masked branch (libmvec has no masked variants)
    vectorized = bool(inner) and not serial and not isinstance(data, ir.Scatter) and not counter.branch_calls
    calls = counter.vector_call_cycles if vectorized else counter.call_cycles
    return _NodeCounts(counter.ops, counter.transcendentals,
                       (calls + counter.divmod_loads * DIVMOD_INDEX_CYCLES) * total, serial, total,
                       _evaluate(symbolic.product(inner), hints), loads,
                       {name: min(_evaluate(t, hints), total) for name, t in counter.strided.items()}, row_loads)


def _evaluate(expr, hints: dict) -> float:
    return float(expr) if isinstance(expr, (int, float)) else float(sympy.sympify(expr).subs(hints))
