"""Warm compiles load our graphs from AOTAutograd's cache (``torch_hetero.aot_cache``): a hit
skips tracing, partitioning and our compile, and runs the same code; anything our compile
depends on (options, device, this package) is in the key; eager fallbacks are not stored."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from torch_hetero import aot_cache, compiler

pytestmark = pytest.mark.skipif(not aot_cache.available(), reason="needs torch's bundled AOTAutograd cache")


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty cache directories: AOTAutograd's (torch's compile cache) and our libraries'."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "torch"))
    monkeypatch.setenv("TORCH_HETERO_CACHE_DIR", str(tmp_path / "hetero"))
    return tmp_path


@pytest.fixture
def compiles(monkeypatch):
    """The kinds of graph our compiler compiled (a cache hit compiles none)."""
    kinds = []
    real = compiler.compile_graph

    def counting(gm, options, name="graph", **kwargs):
        kinds.append(name)
        return real(gm, options, name=name, **kwargs)
    monkeypatch.setattr("torch_hetero.backend.compile_graph", counting)
    return kinds


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))


def _train_step(model, x, **options):
    """Output and first-layer gradient of one compiled training step after a Dynamo reset."""
    torch._dynamo.reset()
    model.zero_grad(set_to_none=True)
    out = torch.compile(model, backend="hetero", options=options)(x)
    out.pow(2).sum().backward()
    return out.detach(), model[0].weight.grad.clone()


def _counter(name):
    return torch._dynamo.utils.counters["aot_autograd"][name]


def test_a_warm_training_compile_loads_both_graphs_and_matches(caches, compiles):
    model, x = _model(), torch.randn(8, 16)
    out, grad = _train_step(model, x)
    assert compiles == ["forward", "backward"]
    hits = _counter("autograd_cache_hit")
    warm_out, warm_grad = _train_step(model, x)
    assert compiles == ["forward", "backward"], "the warm compile ran our compiler"
    assert _counter("autograd_cache_hit") == hits + 1
    assert torch.equal(warm_out, out) and torch.equal(warm_grad, grad)
    model.zero_grad(set_to_none=True)
    model(x).pow(2).sum().backward()
    torch.testing.assert_close(warm_grad, model[0].weight.grad)


def test_a_warm_inference_compile_hits(caches, compiles):
    model, x = _model(), torch.randn(8, 16)
    with torch.no_grad():
        for _ in range(2):
            torch._dynamo.reset()
            out = torch.compile(model, backend="hetero")(x)
    assert compiles == ["inference"]
    torch.testing.assert_close(out, model(x))


@pytest.mark.parametrize("options", [{"fusion": False}, {"device": "h100"}, {"aot_cache": False}],
                         ids=["other-option", "other-device", "cache-off"])
def test_other_options_compile_again(options, caches, compiles):
    model, x = _model(), torch.randn(8, 16)
    _train_step(model, x)
    _train_step(model, x, **options)
    assert compiles == ["forward", "backward"] * 2


def test_an_eager_fallback_is_not_stored(caches, compiles, monkeypatch):
    """A graph we could not compile runs eagerly (one warning) and is compiled, not loaded, next time."""
    def failing(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr("torch_hetero.backend.compile_graph", failing)
    model, x = _model(), torch.randn(8, 16)
    for _ in range(2):
        with pytest.warns(UserWarning, match="running it eagerly"):
            with torch.no_grad():
                torch._dynamo.reset()
                out = torch.compile(model, backend="hetero")(x)
        torch.testing.assert_close(out, model(x))


def test_a_new_process_loads_the_graph_without_compiling(caches):
    """The user's case: the same script run again (libraries and AOTAutograd entries on disk)."""
    script = textwrap.dedent("""
        import torch, torch_hetero.backend as backend
        compiled_kinds = []
        real = backend.compile_graph
        backend.compile_graph = lambda gm, options, name="graph", **kw: compiled_kinds.append(name) or real(gm, options, name=name, **kw)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
        x = torch.randn(8, 16)
        out = torch.compile(model, backend="hetero")(x)
        out.sum().backward()
        print(compiled_kinds, float(model[0].weight.grad.sum()))
    """)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(caches / "torch"), "TORCH_HETERO_CACHE_DIR": str(caches / "hetero")}
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-3000:]
    first, second = (r.stdout.split() for r in runs)
    assert first[:2] == ["['forward',", "'backward']"] and second[0] == "[]", (first, second)
    assert first[-1] == second[-1]   # the same gradient
