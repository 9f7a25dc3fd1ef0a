"""A fixed slice of the coverage run (``benchmarks/coverage.py``): one encoder, one decoder, one
timm CNN and the two recommendation models, each compiled for the host and checked against
eager for inference and a training step; the recommendation models with no ATen fallback
on the host and none in the inference graphs of any Triton profile."""
import pytest

from coverage_checks import TRITON_PROFILES, check

SLICE = ["bert", "gpt2", "resnet18", "dlrm", "two_tower"]


@pytest.mark.parametrize("name", SLICE)
def test_model_passes(name):
    record = check(name, debt=name in ("dlrm", "two_tower"))
    assert record["status"] == "pass", record
    if record["suite"] == "recsys":
        assert not record["fallbacks"], record["fallbacks"]
        assert record["debt"] == {profile: {} for profile in TRITON_PROFILES}, record["debt"]
