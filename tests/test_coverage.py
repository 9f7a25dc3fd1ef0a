"""A fixed slice of the coverage run (``benchmarks/coverage.py``): one encoder, one decoder, one
timm CNN and the two recommendation models, each compiled for the host and checked against
eager for inference and a training step; the recommendation models with no ATen fallback
on the host and none in the inference graphs of any Triton profile."""
import importlib.util
import pathlib
import re

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


def test_a_model_past_the_time_limit_fails_naming_its_stage():
    """The coverage run's guard: a compile that does not finish is a failure that says where it was."""
    path = pathlib.Path(__file__).parent.parent / "benchmarks" / "coverage.py"  # not the coverage package
    spec = importlib.util.spec_from_file_location("coverage_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    record = benchmark.run_one("t5", limit=6, timed=False, rounds=1)
    assert record["status"] == "timeout", record
    assert re.match(r"past the 6 s limit in (start|build|inference compile|training compile)", record["cause"]), record
