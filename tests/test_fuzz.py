"""Differential fuzzing in CI: a bounded number of seeded random graphs, compiled for the host
and (fewer) under the Triton interpreter, match eager.  benchmarks/fuzz.py runs thousands."""
import pytest

from fuzz_graphs import random_graph
from utils import check

HOST_SEEDS = range(60)
TRITON_SEEDS = range(1000, 1015)


@pytest.mark.parametrize("seed", HOST_SEEDS)
def test_random_graph_on_the_host(seed):
    fn, inputs, recipe = random_graph(seed)
    check(fn, *inputs, atol=1e-4, rtol=1e-4), recipe


@pytest.mark.parametrize("seed", TRITON_SEEDS)
def test_random_graph_under_the_triton_interpreter(seed):
    fn, inputs, recipe = random_graph(seed)
    check(fn, *inputs, atol=1e-4, rtol=1e-4, options={"device": "mtia-v2", "executor": "interpret"})


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
