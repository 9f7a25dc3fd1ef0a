"""One model of the coverage list (``torch_hetero.tools.model_catalog``) checked as a user
meets it: compiled for the host, inference and one training step against eager (outputs and
gradients), with whole-graph eager fallbacks, per-op ATen fallbacks and Dynamo's graph breaks
counted; and for each Triton profile the ops that would not be generated there, from lowering
its traced graphs (nothing rendered or run).  Shared by ``benchmarks/coverage.py`` (every
model, each in a process of its own under a compile-time limit) and ``tests/test_coverage.py``
(a fixed slice)."""
from __future__ import annotations

import collections
import copy
import sys
import time
import warnings

import torch

import torch_hetero
from torch_hetero.backend import collect_compiled_graphs
from torch_hetero.compiler import EagerGraph, lower_graph
from torch_hetero.options import resolve
from torch_hetero.tools import model_catalog
from torch_hetero.tools.capture import capture
from torch_hetero.tools.report import report_of

# largest difference from eager relative to the largest eager value (the model suite's measure):
# float32 host compiles land near 1e-6; a kernel that is wrong lands near 1
TOLERANCE = 1e-3
TRITON_PROFILES = tuple(p.name for p in torch_hetero.list_devices() if p.target.language == "triton")


def stage(name: str) -> None:
    """Where the check is, for a parent process that stops it at its time limit."""
    print(f"STAGE {name}", file=sys.stderr, flush=True)


def relative_error(actual, expected) -> float:
    scale = expected.abs().max().item() if expected.numel() else 0.0
    difference = (actual - expected).abs().max().item() if expected.numel() else 0.0
    return difference / scale if scale else difference


def _grad(parameter):
    """A parameter's gradient; none is zeros (eager leaves an output the loss ignores without
    one, a compiled graph's backward gives it zeros, with any backend)."""
    return parameter.grad.float() if parameter.grad is not None else torch.zeros(parameter.shape)


def _loss(zoo, model):
    return zoo.main_output(model(*zoo.inputs)).float().pow(2).mean()


def _compiled_run(fn):
    """(value, eager graph causes, op fallbacks, graph breaks) of ``fn()`` under a fresh Dynamo."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with collect_compiled_graphs() as graphs, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = fn()
    eager = [g.cause for _, g, _ in graphs if isinstance(g, EagerGraph)]
    report = report_of(graphs, "cpu")
    breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
    return value, eager, dict(report.fallbacks), breaks


def check(name: str, training: bool = True, debt: bool = True) -> dict:
    """The record of one model: ``status`` pass / eager fallback / mismatch / error, its
    ``cause``, the errors, counts and compile seconds, and ``debt`` per Triton profile."""
    entry = model_catalog.ENTRIES[name]
    result = {"name": name, "suite": entry.suite, "family": entry.family, "status": "pass", "cause": "",
              "compile_s": {}, "error": {}, "eager_graphs": [], "fallbacks": {}, "graph_breaks": 0, "debt": {}}
    stage("build")
    zoo = model_catalog.build(name)
    with torch.no_grad():
        expected = zoo.main_output(zoo.model(*zoo.inputs)).float()
    stage("inference compile")
    compiled = torch.compile(zoo.model, backend="hetero")

    def infer():
        with torch.no_grad():
            return zoo.main_output(compiled(*zoo.inputs)).float()
    start = time.perf_counter()
    actual, eager, fallbacks, breaks = _compiled_run(infer)
    result["compile_s"]["inference"] = round(time.perf_counter() - start, 2)
    result["error"]["inference"] = relative_error(actual, expected)
    result["eager_graphs"] += eager
    result["fallbacks"] = fallbacks
    result["graph_breaks"] += breaks
    if training:
        stage("training compile")
        reference = copy.deepcopy(zoo.model).train()
        twin = copy.deepcopy(reference)
        _loss(zoo, reference).backward()
        start = time.perf_counter()
        _, eager, fallbacks, breaks = _compiled_run(lambda: _loss(zoo, torch.compile(twin, backend="hetero")).backward())
        result["compile_s"]["training"] = round(time.perf_counter() - start, 2)
        pairs = [(_grad(q), _grad(p)) for p, q in zip(reference.parameters(), twin.parameters())]
        scale = max((e.abs().max().item() for _, e in pairs if e.numel()), default=0.0) or 1.0
        # over all gradients, relative to the largest: a gradient that is zero in exact arithmetic
        # (an attention key's bias) is rounding noise on both sides, not a relative error of 1
        result["error"]["training"] = max(((a - e).abs().max().item() for a, e in pairs if e.numel()), default=0.0) / scale
        result["eager_graphs"] += eager
        result["graph_breaks"] += breaks
        for op, count in fallbacks.items():
            result["fallbacks"][op] = result["fallbacks"].get(op, 0) + count
    if debt:
        stage("debt")
        result["debt"] = triton_debt(zoo)
    wrong = {k: v for k, v in result["error"].items() if not v <= TOLERANCE}
    if wrong:
        result["status"], result["cause"] = "mismatch", "wrong result: " + ", ".join(f"{k} {v:.1e}" for k, v in wrong.items())
    elif result["eager_graphs"]:
        result["status"], result["cause"] = "eager fallback", result["eager_graphs"][0]
    return result


def triton_debt(zoo) -> dict:
    """Triton profile → {ATen op: calls} that its inference graphs would leave to ATen."""
    try:
        captured = capture(zoo.model, zoo.inputs, "infer")
    except Exception as error:  # tracing on its own can fail where the compile above did not
        return {"capture failed": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    debt = {}
    for profile in TRITON_PROFILES:
        counts = collections.Counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _, gm in captured.graphs:
                graph, _ = lower_graph(gm, resolve({"device": profile}))
                counts.update(graph.fallback_counts)
        debt[profile] = dict(sorted(counts.items()))
    return debt
