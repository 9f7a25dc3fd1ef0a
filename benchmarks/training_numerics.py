"""Is a training mismatch ours, or the float32 arithmetic every compiler shares?  For catalog
models (``torch_hetero.tools.model_catalog``), one training step's gradients from eager float32,
hetero and Inductor, each against eager in float64: the largest difference over all gradients
relative to the largest (``benchmarks/coverage.py``'s measure).  Where hetero and Inductor sit
together far from eager float32, the cause is a decomposition both use (batch norm's float32
statistics, where ATen's CPU kernel accumulates in double), not a kernel of ours.

    python benchmarks/training_numerics.py mnasnet_050 ghostnet_050"""
from __future__ import annotations

import pathlib
import sys
import warnings

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))   # coverage_checks
from coverage_checks import gradient_error, in_float64, run_model  # noqa: E402

from torch_hetero.tools import model_catalog  # noqa: E402


def main():
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    print(f"{'model':<24}{'eager fp32':>12}{'hetero':>12}{'inductor':>12}   (gradient error vs eager float64)")
    for name in sys.argv[1:]:
        zoo = model_catalog.build(name)
        reference = run_model(zoo, "training", torch.float64, *in_float64(zoo))
        errors = [gradient_error(run_model(zoo, "training", torch.float64, backend=backend), reference)
                  for backend in (None, "hetero", "inductor")]
        print(f"{name:<24}" + "".join(f"{e:>12.1e}" for e in errors))


if __name__ == "__main__":
    main()
