"""Is a training mismatch ours, or the float32 arithmetic every compiler shares?  For catalog
models (``torch_hetero.tools.model_catalog``), one training step's gradients from eager float32,
hetero and Inductor, each against eager in float64: the largest difference over all gradients
relative to the largest (``benchmarks/coverage.py``'s measure).  Where hetero and Inductor sit
together far from eager float32, the cause is a decomposition both use (batch norm's float32
statistics, where ATen's CPU kernel accumulates in double), not a kernel of ours.

    python benchmarks/training_numerics.py mnasnet_050 ghostnet_050"""
from __future__ import annotations

import copy
import sys
import warnings

import torch

from torch_hetero.tools import model_catalog


def gradients(zoo, model, inputs, backend=None) -> list:
    model = copy.deepcopy(model).train()
    run = torch.compile(model, backend=backend) if backend else model
    zoo.main_output(run(*inputs)).double().pow(2).mean().backward()
    return [p.grad.double() if p.grad is not None else torch.zeros(p.shape, dtype=torch.float64)
            for p in model.parameters()]


def main():
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    print(f"{'model':<24}{'eager fp32':>12}{'hetero':>12}{'inductor':>12}   (gradient error vs eager float64)")
    for name in sys.argv[1:]:
        zoo = model_catalog.build(name)
        reference = gradients(zoo, zoo.model.double(), tuple(x.double() if x.is_floating_point() else x
                                                              for x in zoo.inputs))
        zoo.model.float()
        scale = max(r.abs().max().item() for r in reference) or 1.0
        errors = [max((a - r).abs().max().item() for a, r in zip(gradients(zoo, zoo.model, zoo.inputs, backend),
                                                                   reference)) / scale
                  for backend in (None, "hetero", "inductor")]
        print(f"{name:<24}" + "".join(f"{e:>12.1e}" for e in errors))


if __name__ == "__main__":
    main()
