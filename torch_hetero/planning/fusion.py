"""Which realized nodes run as one kernel, decided by the device model.

Nodes are grouped in execution order (extern calls are barriers).  A group shares one outer
loop nest — the ``outer`` ranges, run in parallel — and each node runs its own inner loop
inside it: a reduction over its reduction ranges, a pointwise node over its trailing dims.
That one shape covers vertical fusion (a pointwise chain; a reduction reading a pointwise
node's row; softmax's max → sum → normalize, layer norm's mean → var → normalize) and
horizontal fusion (siblings over the same rows).

A node may join only if everything it reads from the group was written in the same outer
iteration (no cycles, no change in results), and only if the cost model estimates the fused
kernel faster than the group and the node apart — launches and bytes saved against
parallelism lost.  Reductions read only inside their group never reach memory (``local``).
Every decision, taken or refused, is kept with its reason for ``explain()``."""
from __future__ import annotations

import collections
import dataclasses
from typing import Optional

import sympy

from .. import ir, symbolic
from ..ir import ATTENTIONS, GROUPED_MATMUL
from ..lowering.extern import grouped_mm_problem
from .cost_model import MemoryModel, estimate_kernel
from .gemm_choice import choose, choose_attention, libraries
from .kernel_analysis import analyze, column_reduction
from .loop_nest import Group, default_outer, dims, inner_ranges, loads_of, node_indices, rows_split, same


def group_nodes(graph, profile, tiles, loads: dict, storage: dict, readers: dict, pinned: set,
                enabled: bool = True) -> list:
    """Groups of ``graph.nodes``' ComputedBuffers; ``tiles``: the matmuls' tiles
    (``tiling.MatmulTiles``); ``loads``: node name → the buffers it loads
    (``loop_nest.loads_by_node``); ``readers``: buffer name → number of nodes reading it;
    ``pinned``: buffers that must reach memory (graph outputs).  ``local``:
    buffers that never reach memory — reductions read only inside their kernel, and a fused
    matmul's output when only its epilogue reads it (on the host, ATen still writes it).  On a
    target that generates every GEMM (``Target.generates_gemm``) a matmul no epilogue joins is
    a kernel of its own, with no nodes.  Nodes that do not read a matmul's output (a batch
    norm's per-channel scale) may run before it: it waits for the first node that reads it."""
    planner = _Planner(profile, tiles, loads, storage, graph.size_hints)
    computed = planner.dequantizations(graph, readers, pinned) if enabled else {}
    groups: list = []
    current: Optional[_Draft] = None
    matmul = None  # the extern matmul just before, whose epilogue the next node may become
    matmul_at = 0  # where its kernel goes if it runs alone: where its call was

    def alone(call) -> None:
        """``call`` left without an epilogue: its own generated kernel where the template is
        the choice (``gemm_choice``: the only one without a library; a convolution the lowering
        made a GEMM, or a matmul where the target generates GEMMs; a grouped GEMM only without
        a BLAS library), else the library call it is."""
        if call is None or (call.gemm is None and not profile.target.matmul_epilogue):
            return
        if call.op == GROUPED_MATMUL and grouped_mm_problem(call.args, call.kwargs):
            return  # the library's (without one the lowering made it a fallback)
        choice = planner.gemm_choice(call)
        if choice.template:
            groups.insert(matmul_at, _Draft([], (), [f"{call.result.name}: {call.name} {choice.reason}"], matmul=call))

    for node in graph.nodes:
        if isinstance(node, ir.ComputedBuffer) and node.name in computed:
            call = computed[node.name]
            groups.append(_Draft([node], default_outer(node), [
                f"{node.name}: computed in the operand loads of {call.name} ({call.result.name}), never written "
                "where the template runs it (here a kernel only for a library GEMM: the host's)"], in_template=True))
            continue
        if not isinstance(node, ir.ComputedBuffer):
            alone(matmul)
            current, matmul, matmul_at = None, node if node.is_matmul else None, len(groups)
            if node.op in ATTENTIONS and node.kind == "extern":
                choice = choose_attention(node, profile, graph.size_hints) if profile.target.attention else None
                if not profile.target.attention or (choice is not None and choice.template):
                    why = choice.reason if choice else ("generated as flash attention in the device model's tile "
                                                        "(the profile declares no attention library)")
                    groups.append(_Draft([], (), [f"{', '.join(b.name for b in node.outputs if b)}: {node.name} {why}"],
                                         matmul=node))
            elif node.op == GROUPED_MATMUL and node.kind == "extern":
                alone(node)  # its output rows belong to data-dependent groups: no epilogue
            continue
        if isinstance(node.data, (ir.Scatter, ir.Scan)):  # writes what other iterations read: alone
            kind = {ir.Scatter: "scatter", ir.Scan: "scan", ir.Sort: "sort"}[type(node.data)]
            alone(matmul)
            groups.append(_Draft([node], default_outer(node), [f"{node.name}: a {kind} runs alone"]))
            current, matmul = None, None
            continue
        if profile.target.column_reductions and column_reduction(node, default_outer(node), graph.size_hints):
            alone(matmul)
            groups.append(_Draft([node], default_outer(node), column=True, decisions=[
                f"{node.name}: a column reduction runs alone (reduction loop outside, outputs vectorized)"]))
            current, matmul = None, None
            continue
        if current is not None and enabled:
            verdict = planner.try_join(current, node)
            if verdict is None:
                if matmul is not None and matmul.result.name in planner.loaded(node):
                    alone(matmul)  # read inside another kernel: it cannot wait for an epilogue
                    matmul = None
                continue
            current.decisions.append(f"{node.name} not fused: {verdict}")
        current = _Draft([node], default_outer(node), [])
        if matmul is not None and enabled and profile.target.matmul_epilogue and \
                matmul.result.name not in planner.loaded(node):
            # independent of the matmul (a batch norm's per-channel scale): it runs first and
            # the matmul waits for the node that reads it, its epilogue if it can be
            current.decisions.append(f"{node.name} runs before {matmul.name} (it does not read "
                                     f"{matmul.result.name}), which waits for its epilogue")
            groups.append(current)
            continue
        if matmul is not None and enabled:
            fused, why = planner.try_epilogue(current, matmul, readers)
            current.decisions.append(f"{node.name} {'fused' if fused else 'not fused'} into the "
                                     f"{matmul.name} output tile{': ' + why if why else ''}")
            if fused:
                matmul = None
        alone(matmul)  # it runs before the node that did not become its epilogue
        groups.append(current)
        matmul = None
    alone(matmul)
    return [_frozen(draft, planner, readers, pinned, computed) for draft in groups]


@dataclasses.dataclass
class _Draft:
    """A kernel while fusion grows it; ``_frozen`` makes it the plan's ``Group``."""
    nodes: list
    outer: tuple
    decisions: list
    matmul: object = None
    column: bool = False
    in_template: bool = False

    @property
    def names(self) -> list:
        return [n.name for n in self.nodes]


def _frozen(draft: _Draft, planner: "_Planner", readers: dict, pinned: set, computed: dict) -> Group:
    """The finished group, with what it keeps on chip."""
    inside = collections.Counter(name for n in draft.nodes for name in set(planner.loaded(n)))
    local = {n.name for n in draft.nodes if isinstance(n.data, ir.Reduction) and n.name not in pinned
             and 0 < readers.get(n.name, 0) == inside[n.name]}
    reread = {n.name for n in draft.nodes if isinstance(n.data, ir.Reduction) and inside[n.name]} - local
    if draft.matmul is not None:  # on its target, the matmul output tile never leaves the kernel
        out = draft.matmul.result.name
        local |= {out} if out not in pinned and readers.get(out, 0) == inside[out] > 0 else set()
    dequantized = frozenset(name for name, call in computed.items() if call is draft.matmul)
    return Group(tuple(draft.nodes), draft.outer, frozenset(local), frozenset(reread), tuple(draft.decisions),
                 draft.matmul, draft.column, dequantized, draft.in_template)


class _Planner:
    """Fusion decisions for one graph on one profile, with the per-node work memoized."""

    def __init__(self, profile, tiles, loads: dict, storage: dict, hints: dict):
        self.profile, self.tiles, self.loads, self.storage, self.hints = profile, tiles, loads, storage, hints
        self._costs: dict = {}
        self._counts: dict = {}   # per-node analysis, shared by every candidate kernel
        self._prologue_us: dict = {}   # id(call) → the dequantization kernels its template saves

    def dequantizations(self, graph, readers: dict, pinned: set) -> dict:
        """Buffer name → the matmul whose template computes it as it loads its tiles
        (``ir.Dequantized``): a buffer that call alone reads and the graph does not return,
        where the template runs the call — priced against the library with the dequantization
        kernel on the library's side."""
        nodes = {n.name: n for n in graph.nodes if isinstance(n, ir.ComputedBuffer)}
        computed = {}
        for call in graph.nodes:
            if not isinstance(call, ir.ExternCall) or not call.dequantized:
                continue
            names = [d.name for d in call.dequantized if readers.get(d.name, 0) == 1 and d.name not in pinned]
            if not names:
                continue
            self._prologue_us[id(call)] = self.time_us([([nodes[n]], default_outer(nodes[n])) for n in names])
            if self.gemm_choice(call).template:
                computed.update(dict.fromkeys(names, call))
        return computed

    def gemm_choice(self, call, epilogue_us: float = 0.0):
        """``gemm_choice.choose`` for ``call``, its dequantization kernels on the library's side."""
        return choose(call, self.tiles, self.profile, self.hints, epilogue_us, self._prologue_us.get(id(call), 0.0))

    def try_join(self, group: _Draft, node) -> Optional[str]:
        """Add ``node`` to ``group`` and return None, or return why not."""
        if group.matmul is not None and not (isinstance(node.data, ir.Pointwise) and same(
                dims(node.data.ranges), dims(group.nodes[0].data.ranges))):
            return "the kernel is a matmul epilogue: only elementwise ops over its output tile join"
        outer = _common_outer(group, node)
        if outer is None:
            return (f"iterates {_fmt(dims(node.data.ranges))}, the kernel's outer loops are "
                    f"{_fmt(group.outer)}")
        problem = _dependency_problem(group, node, outer)
        if problem:
            return problem
        apart = self.time_us([(group.nodes, group.outer), ([node], default_outer(node))])
        fused = self.time_us([(group.nodes + [node], outer)])
        if fused >= apart:
            return f"estimated slower fused ({fused:.3g} us vs {apart:.3g} us apart)"
        mine, written = set(self.loaded(node)), set(group.names)
        theirs = {name for member in group.nodes for name in self.loaded(member)}
        how = ("reads " + ", ".join(sorted(mine & written))) if mine & written else \
            ("shares inputs " + ", ".join(sorted(mine & theirs))) if mine & theirs else "independent"
        group.nodes.append(node)
        group.outer = outer
        group.decisions.append(f"{node.name} fused: {how}; est. {fused:.3g} us vs {apart:.3g} us apart")
        return None

    def try_epilogue(self, group: _Draft, call, readers: dict) -> tuple:
        """Make ``group`` (one pointwise node) the epilogue of the matmul ``call`` — applied to
        each output tile before it is stored: (True, why or ""), or (False, why not)."""
        node = group.nodes[0]
        why_not = self._epilogue_problem(node, call)
        if why_not:
            return False, why_not
        if not libraries(call, self.profile):
            # the template is the only GEMM: the epilogue saves a launch and the output's trip
            group.matmul = call
            return True, call.note
        choice = self.gemm_choice(call, epilogue_us=self.time_us([([node], default_outer(node))]))
        if choice.template:
            group.matmul = call
        return choice.template, choice.reason

    def _epilogue_problem(self, node, call) -> Optional[str]:
        """Why ``node`` cannot be the epilogue of ``call``'s template, if so."""
        out = call.result
        if not self.profile.target.matmul_epilogue:
            return "the target's GEMM is a library call"
        split = isinstance(node.data, ir.Pointwise) and call.gemm is None and rows_split(node, out.layout.size)
        if not isinstance(node.data, ir.Pointwise) or not (split or same(dims(node.data.ranges), dims(out.layout.size))):
            return f"iterates {_fmt(dims(node.data.ranges))}, the matmul output is {_fmt(dims(out.layout.size))}"
        if call.gemm is not None and not same(node.data.logical(list(node.data.ranges)), out.layout.size):
            return f"iterates {_fmt(node.data.ranges)}, not the output's dims {_fmt(out.layout.size)}"
        outer = default_outer(node)
        outer_vars = list(symbolic.index_symbols("o", len(outer)))
        inner_vars = list(symbolic.index_symbols("x", len(inner_ranges(node, outer))))
        index, _ = node_indices(node, outer_vars, outer, inner_vars)
        if split:  # the output's row: the leading dims combined row-major
            row = sympy.Integer(0)
            for size, i in zip(node.data.ranges[:-1], index[:-1]):
                row = row * size + i
            index = [row, index[-1]]
        for name, load_index, ranges in loads_of(node, outer, outer_vars):
            ranges = {**ranges, **dict(zip(outer_vars, outer))}
            if name == out.name and sympy.expand(symbolic.simplify_index(load_index, ranges)
                                                 - symbolic.simplify_index(out.layout.index(index), ranges)) != 0:
                return f"reads {name} outside its own output element"
        if out.name not in self.loaded(node):
            return f"does not read {out.name}"
        tile = self.tiles.of(call)
        extra = sum(self.storage[n][1].itemsize if n in self.storage else 4   # a frozen constant: at most 4 B
                    for n in self.loaded(node) if n != out.name)
        epilogue_bytes = tile.bm * tile.bn * (4 + extra)  # the fp32 accumulator tile and the other operands
        if tile.smem + epilogue_bytes > self.profile.local_sram_bytes:
            return (f"the output tile's epilogue ({epilogue_bytes} B) and the staged operands "
                    f"({tile.smem} B) exceed local SRAM")
        return None

    def loaded(self, node) -> list:
        """Names of the buffers ``node`` loads."""
        return self.loads[node.name]

    def time_us(self, kernels: list) -> float:
        """Estimated time of ``kernels`` ((nodes, outer) pairs) run one after another."""
        memory = MemoryModel(self.profile)
        total = 0.0
        for nodes, outer in kernels:
            key = (tuple(n.name for n in nodes), outer)
            if key not in self._costs:
                local = frozenset(n.name for n in nodes if isinstance(n.data, ir.Reduction)
                                  and any(n.name in self.loaded(m) for m in nodes))
                group = Group(tuple(nodes), outer, local)
                self._costs[key] = analyze(group, self.storage, self.hints, self._counts)
            total += estimate_kernel(self._costs[key], self.profile, memory, nodes[-1].get_dtype()).time_us
        return total


def _common_outer(group: _Draft, node) -> Optional[tuple]:
    """Outer ranges every node of the group and ``node`` can share, or None."""
    candidates = [group.outer]
    if all(isinstance(n.data, ir.Pointwise) for n in group.nodes):
        candidates.append(default_outer(node))  # re-split a pointwise group around a reduction
    for outer in candidates:
        if all(inner_ranges(n, outer) is not None for n in group.nodes + [node]):
            return outer
    return None


def _dependency_problem(group: _Draft, node, outer: tuple) -> Optional[str]:
    """Why ``node`` reading the group's buffers would see values not yet written, if so."""
    written = {n.name: n for n in group.nodes}
    outer_vars = list(symbolic.index_symbols("o", len(outer)))
    for name, index, ranges in loads_of(node, outer, outer_vars):
        producer = written.get(name)
        if producer is None:
            continue
        inner = inner_ranges(producer, outer)
        if isinstance(producer.data, ir.Pointwise) and not same(inner, inner_ranges(node, outer)):
            return f"reads {name} over {_fmt(inner_ranges(node, outer))}, written over {_fmt(inner)}"
        index_vars, _ = node_indices(producer, outer_vars, outer, list(symbolic.index_symbols("x", len(inner))))
        stored = producer.layout.index(index_vars)
        ranges = {**ranges, **dict(zip(outer_vars, outer))}
        if sympy.expand(symbolic.simplify_index(index, ranges) - symbolic.simplify_index(stored, ranges)) != 0:
            return f"reads {name} outside the element written in the same iteration"
    return None


def _fmt(ranges) -> str:
    return "(" + ", ".join(str(r) for r in ranges) + ")"
