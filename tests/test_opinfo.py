"""PyTorch's OpInfo database: the first float32 sample of every op with CPU support, compiled
with the hetero backend, matches eager (or the graph runs eagerly, with the one warning the
backend promises, when it cannot be compiled; complex values run as per-op fallbacks).  The full sweep
(every sample, more dtypes, gradients, the native/fallback table) is benchmarks/opinfo_sweep.py."""
import pytest
import torch

from opinfo_cases import float32_ops, run_sample

OPS = float32_ops()


@pytest.mark.parametrize("op", OPS, ids=lambda op: f"{op.name}.{op.variant_test_name}".rstrip("."))
def test_first_float32_sample(op):
    sample = next(iter(op.sample_inputs("cpu", torch.float32)), None)
    if sample is None:
        pytest.skip("no float32 sample")
    status, _, problem = run_sample(op, sample)
    if status == "skip":
        pytest.skip(problem)
    assert status != "wrong", problem
