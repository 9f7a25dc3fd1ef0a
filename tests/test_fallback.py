"""ATen fallback for ops without a native lowering (strict mode, the once-per-process warning),
and the explain() report, including graphs that ran eagerly."""

import dataclasses
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F

import torch_hetero
from torch_hetero.codegen.renderers import RENDERERS
from torch_hetero.backend import collect_compiled_graphs
from torch_hetero.errors import FallbackWarning, GraphFallbackWarning
from utils import check


# (a) Ops with no native lowering run through ATen and are correct; each case asserts that its
#     op did fall back (sort was such a case until it was lowered: it now passes native=True).
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("fn,make_inputs,grad,op", [
    pytest.param(lambda x: torch.histc(x, 5) * 2 + 1, lambda: (torch.randn(3, 5, 7),), False, "aten.histc",
                 id="histc"),
    pytest.param(lambda x: torch.mode(x.sin(), dim=-1), lambda: (torch.randn(3, 5, 7),), False, "aten.mode",
                 id="mode"),
    pytest.param(lambda m: torch.linalg.det(m + 2 * torch.eye(4)).exp(), lambda: (torch.randn(3, 4, 4),), True,
                 "aten._linalg_det", id="linalg_det"),
])
def test_fallback_op_is_correct(fn, make_inputs, grad, op, dynamic):
    torch.manual_seed(0)
    with collect_compiled_graphs() as graphs:
        check(fn, *make_inputs(), dynamic=dynamic, grad=grad, atol=1e-4, rtol=1e-4)
    assert op in {name for _, graph, _ in graphs for name in graph.fallbacks}, [g.fallbacks for _, g, _ in graphs]


def test_native_check_passes_a_lowered_op():
    check(lambda x: torch.sort(x.sin(), dim=-1), torch.randn(3, 5, 7), native=True)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(7, 7)

    def forward(self, x):
        return torch.histc(self.proj(x), 5)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()

    def forward(self, x):
        return self.block(x) + 1


def test_strict_raises_on_a_per_op_fallback_naming_op_layer_and_profile():
    """native=True (strict mode): the fallback that would run silently raises at lowering time."""
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed) as excinfo:
        check(Net(), torch.randn(3, 7), native=True)
    message = str(excinfo.value)
    assert "HeteroCompileError" in message
    assert "aten.histc (layer 'block') has no native lowering on the 'cpu' profile" in message, message
    assert "compile without strict" in message


def test_fallback_warns_once_per_process_across_graphs_and_calls(tmp_path):
    code = """
        import warnings, torch
        from torch_hetero.errors import FallbackWarning
        x = torch.randn(16)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = torch.compile(lambda x: torch.histc(x, 5) * 2, backend="hetero")
            second = torch.compile(lambda x: torch.histc(x.sin(), 3).sum(), backend="hetero")
            for _ in range(3):
                first(x), second(x), first(x[:8])
        for w in caught:
            if issubclass(w.category, FallbackWarning):
                print(w.message)
    """
    env = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "torch"), "TORCH_HETERO_CACHE_DIR": str(tmp_path / "hetero"),
           "TORCH_LOGS": "torch_hetero"}
    for run in ("cold", "warm"):  # warm: the graphs load from AOTAutograd's cache, nothing is lowered
        out, log = run_python(code, env)
        assert out.count("aten.histc") == 1, (run, out)
        assert "aten.histc has no native lowering on the 'cpu' profile" in out, out
        assert log.count("compiled the inference graph" if run == "cold" else "from AOTAutograd's cache") >= 3, log


def run_python(code: str, env: dict) -> tuple:
    """(stdout, stderr) of ``code`` in a fresh interpreter with ``env`` added to ours."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout, result.stderr


# (b) The report.
def pointwise_chain(x):
    return x.sin().cos() + 1


def with_histc(x):
    return torch.histc(x * 2, bins=5).exp()


def mixed(x, w):
    return F.layer_norm(x, (7,)).softmax(-1) @ w + torch.histc(x, 4).sum()


def explain(fn, *args):
    torch._dynamo.reset()
    return torch_hetero.explain(fn, *args)


def x3():
    torch.manual_seed(0)
    return torch.randn(3, 5, 7)


@pytest.mark.parametrize("fn,args", [
    pytest.param(pointwise_chain, lambda: (x3(),), id="pointwise"),
    pytest.param(with_histc, lambda: (x3(),), id="histc"),
    pytest.param(mixed, lambda: (x3(), torch.randn(7, 4)), id="mixed"),
])
def test_report_structure(fn, args):
    report = explain(fn, *args())
    assert str(report).strip()
    assert isinstance(report.kernels, list) and report.kernels
    for kernel in report.kernels:
        assert isinstance(kernel.name, str) and kernel.name
        assert kernel.target == "cpp"
        assert kernel.aten_ops and all(op.startswith("aten.") for op in kernel.aten_ops), kernel.aten_ops
        graph, function = kernel.name.split(".")
        assert f'extern "C" void {function}(' in report.code[f"{graph}.cpp"], f"no code for {kernel.name}"
    assert isinstance(report.fallbacks, dict)
    assert all(isinstance(op, str) and isinstance(n, int) and n > 0 for op, n in report.fallbacks.items())
    assert isinstance(report.code, dict) and report.code
    assert all(isinstance(src, str) and src.strip() for src in report.code.values())


def test_report_lists_histc_fallback():
    report = explain(with_histc, x3())
    assert report.fallbacks.get("aten.histc", 0) >= 1, report.fallbacks


def test_report_pointwise_chain_is_one_fused_kernel():
    report = explain(pointwise_chain, x3())
    assert report.fallbacks == {}
    assert len(report.kernels) == 1, [k.name for k in report.kernels]
    assert {"aten.sin", "aten.cos", "aten.add"} <= set(report.kernels[0].aten_ops)


BROKEN_PRELUDE_LINE = "\nstatic int broken = undeclared_name;\n"  # g++ rejects every build


def test_graph_that_ran_eagerly_is_in_the_report(monkeypatch):
    host = RENDERERS["cpp"]
    monkeypatch.setitem(RENDERERS, "cpp", dataclasses.replace(host, prelude=host.prelude + BROKEN_PRELUDE_LINE))
    with pytest.warns(GraphFallbackWarning):
        report = explain(with_histc, x3())
    [eager] = report.eager
    assert eager.name == "inference"
    assert eager.cause.startswith("HeteroCompileError: g++ failed to build generated code: ")
    assert "error:" in eager.cause and "undeclared_name" in eager.cause, eager.cause
    assert eager.aten_ops == {"aten.mul": 1, "aten.histc": 1, "aten.exp": 1}, eager.aten_ops
    assert report.kernels == [] and report.estimate_us is None
    text = str(report)
    assert "0 generated kernel(s), 0 extern call(s), 0 fallback call(s), 1 graph(s) ran eagerly\n" in text, text
    assert f"inference ran eagerly: {eager.cause}" in text, text
    assert "its ATen ops: aten.exp x1, aten.histc x1, aten.mul x1" in text, text
    assert "no fallbacks" not in text
