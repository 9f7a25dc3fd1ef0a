"""Shapes: recompilation on new shapes and ``dynamic=True`` behave as the README documents, and
tensors too large for int32 offsets get int64 index arithmetic."""

import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

from torch_hetero.backend import collect_compiled_graphs
from torch_hetero.compiler import compile_graph
from torch_hetero.decompositions import decomposition_table
from torch_hetero.options import Options
from torch_hetero.runtime import triton_run
from utils import compile_hetero


def fn(x):
    return (x * 2).softmax(-1) + x.sum(0)


SHAPES = [(4, 8), (6, 8), (9, 8), (4, 8)]


@pytest.mark.parametrize("dynamic,graphs,symbolic", [
    (False, 3, False),   # one static graph per distinct shape; a repeated shape reuses its graph
    (None, 2, True),     # static first; the second shape recompiles with dynamic sizes, which serve the rest
    (True, 1, True),     # one graph with symbolic sizes for every shape
], ids=["static", "automatic", "dynamic"])
def test_recompilation_follows_the_dynamic_setting(dynamic, graphs, symbolic):
    torch._dynamo.reset()
    compiled = compile_hetero(fn, dynamic=dynamic, native=True)
    with collect_compiled_graphs() as compiled_graphs:
        for shape in SHAPES:
            x = torch.randn(shape)
            torch.testing.assert_close(compiled(x), fn(x))
    assert len(compiled_graphs) == graphs, [g.code.keys() for _, g, _ in compiled_graphs]
    last = compiled_graphs[-1][1]
    assert any(k.symbol_args for k in last.kernels) == symbolic


def _fake_graph(shape):
    """``fn``'s ATen graph for a ``shape`` input, traced on fake tensors (no memory)."""
    with FakeTensorMode():
        x = torch.empty(shape)
        return make_fx(lambda v: (fn(v),), decomposition_table=decomposition_table(), tracing_mode="fake")(x)


def test_tensors_past_int32_index_in_int64():
    """2**16 x (2**15 + 3) elements (> 2**31): Triton kernels widen their program ids to int64
    and still build for the GPU target; a small graph keeps int32.  Host C++ loops are int64."""
    options = Options(device="h100", executor="host")
    big, small = compile_graph(_fake_graph((2**16, 2**15 + 3)), options), compile_graph(_fake_graph((64, 33)), options)
    source = big.code["graph.triton.py"]
    assert source.count("tl.program_id(0).to(tl.int64)") == len(big.kernels) >= 1
    assert "to(tl.int64) * XBLOCK" not in small.code["graph.triton.py"]
    kernels = big.code["graph.cpp"][big.code["graph.cpp"].index("extern \"C\" void kernel"):]
    assert not re.search(r"\b(int|int32_t) [a-z]", kernels)  # no 32-bit index variables
    assert "for (int64_t" in big.code["graph.cpp"]
    shared = triton_run.compile_ahead(source, big.rendered["triton"], "cuda:90")
    assert set(shared) == {k.name for k in big.kernels}
