"""Differential fuzzing in CI: a bounded number of seeded random graphs, compiled for the host
and (fewer) under the Triton interpreter, match eager.  benchmarks/fuzz.py runs thousands."""
import pytest

from fuzz_graphs import random_graph
from utils import check

HOST_SEEDS = range(60)
TRITON_SEEDS = range(1000, 1015)


def check_random_graph(seed: int, **options):
    """``check`` on the graph of ``seed``; a failure shows the graph's recipe."""
    fn, inputs, recipe = random_graph(seed)
    try:
        check(fn, *inputs, atol=1e-4, rtol=1e-4, **options)
    except Exception as error:
        raise AssertionError(f"random graph failed: {recipe}") from error


@pytest.mark.parametrize("seed", HOST_SEEDS)
def test_random_graph_on_the_host(seed):
    check_random_graph(seed)


@pytest.mark.parametrize("seed", TRITON_SEEDS)
def test_random_graph_under_the_triton_interpreter(seed):
    check_random_graph(seed, options={"device": "mtia-v2", "executor": "interpret"})


def test_a_failing_random_graph_shows_its_recipe(monkeypatch):
    """A failure names the seed and the steps, so that it can be reproduced."""
    def failing(*args, **kwargs):
        raise AssertionError("mismatch")
    monkeypatch.setitem(globals(), "check", failing)
    with pytest.raises(AssertionError, match=r"random graph failed: seed 7: shapes .*steps"):
        check_random_graph(7)


def test_periodic_functions_get_bounded_arguments():
    """Seed 2220 once computed sin(exp(4x)) with arguments near 1e6, where eager's and any
    compiled sin of the same float differ in the last ulp of the argument's computation; no
    generated graph gives sin an argument outside [-4, 4] now."""
    import torch
    arguments = []
    real_sin = torch.sin

    def recording_sin(x):
        arguments.append(x.abs().max().item() if x.numel() else 0.0)
        return real_sin(x)
    for seed in [2220, *HOST_SEEDS, *TRITON_SEEDS]:
        fn, inputs, recipe = random_graph(seed)
        torch.sin = recording_sin
        try:
            fn(*inputs)
        finally:
            torch.sin = real_sin
    assert arguments and max(arguments) <= 4.0
    check_random_graph(2220)


def test_symbolic_size_one_broadcasts():
    """Found by the fuzzer (seed 121): a narrowed dim of symbolic size max(s0 // 2, 1), which is
    1 for the example inputs, must broadcast against s0 (Dynamo guards on it)."""
    import torch

    def fn(x, y):
        z = x.flatten()
        return z.narrow(0, 0, max(z.shape[0] // 2, 1)) * y
    check(fn, torch.randn(2), torch.randn(2), dynamic=True)
    check(lambda x, y: x.narrow(0, 0, max(x.shape[0] // 2, 1)).expand(x.shape[0]) + y,
          torch.randn(2), torch.randn(2), dynamic=True)


def test_concatenated_broadcasts():
    """Found by the fuzzer (seed 420): g++ 12 -O3 AVX-512 if-conversion once miscompiled this
    cat (see runtime/cpp_build.FLAGS)."""
    import torch
    torch.manual_seed(0)

    def fn(x, y):
        a = x[:1] + y
        return torch.cat([a, a * 2], 0)
    check(fn, torch.randn(16), torch.randn(16))


def test_dynamic_index_divided_by_a_squared_size():
    """Found by the fuzzer (seed 401): i0 / (s * s) was printed as i0 / s * s."""
    import torch
    x = torch.randn(33, 33, 5, 1).permute(3, 2, 1, 0)
    y = torch.randn(1, 33, 66)[..., ::2]
    check(lambda x, y: (x.neg() - y).flatten(), x, y, dynamic=True)
