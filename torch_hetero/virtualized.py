"""The virtual ``ops`` handler: IR inner functions call ``ops.add(a, b)`` and whoever is
installed with :func:`set_ops_handler` decides what that means (render C++, render Triton,
collect reads).  This is what lets one lowering serve every backend."""
from __future__ import annotations

import contextlib
import threading

from .ops_protocol import OPS

_state = threading.local()


@contextlib.contextmanager
def set_ops_handler(handler):
    previous = getattr(_state, "handler", None)
    _state.handler = handler
    try:
        yield handler
    finally:
        _state.handler = previous


def _dispatch(name: str):
    # resolved at call time, so ``ops.sin`` can be passed around before any handler is set
    def dispatch(*args, **kwargs):
        handler = getattr(_state, "handler", None)
        if handler is None:
            raise RuntimeError(f"ops.{name} called outside of a codegen context")
        return getattr(handler, name)(*args, **kwargs)
    dispatch.__name__ = name
    return staticmethod(dispatch)


class _OpsProxy:
    """Forwards ``ops.<name>(...)`` to the handler installed on this thread, for the names of
    the ops protocol only."""

    def __getattr__(self, name):
        raise AttributeError(f"ops.{name}: no such op in the ops protocol (torch_hetero/ops_protocol.py)")


for _name in OPS:
    setattr(_OpsProxy, _name, _dispatch(_name))
ops = _OpsProxy()


# ---------------------------------------------------------------- origin tracking
# Which ATen ops a node came from: set while a node is lowered (so IR built by it remembers
# its origin), and collected while a kernel is rendered (so the report lists what it fused).
def current_origin() -> tuple:
    return getattr(_state, "origin", ())


@contextlib.contextmanager
def lowering_origin(name: str):
    previous = current_origin()
    _state.origin = (name,)
    try:
        yield
    finally:
        _state.origin = previous


@contextlib.contextmanager
def collect_origins():
    previous = getattr(_state, "origin_sink", None)
    sink: list = []
    _state.origin_sink = sink
    try:
        yield sink
    finally:
        _state.origin_sink = previous


def in_order(inlined: list, own) -> list:
    """A node's fused ATen ops, producers first (inlined loaders were entered consumer-first)."""
    ordered = list(reversed(inlined))
    return ordered + [name for name in own if name not in ordered]


def record_origins(names) -> None:
    sink = getattr(_state, "origin_sink", None)
    if sink is not None:
        for name in names:
            if name not in sink:
                sink.append(name)


# ---------------------------------------------------------------- the graph being lowered
def current_graph():
    graph = getattr(_state, "graph", None)
    if graph is None:
        raise RuntimeError("no graph is being lowered")
    return graph


@contextlib.contextmanager
def lowering_graph(graph):
    previous = getattr(_state, "graph", None)
    _state.graph = graph
    try:
        yield graph
    finally:
        _state.graph = previous
