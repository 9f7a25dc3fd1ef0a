"""Everything the compiler decides for a fixed set of graphs, written as text: per graph and
profile the report (kernels, estimates, tilings, fusion decisions), the schedule and every
generated source (wrapper, C++, Triton).  Run it before and after a refactoring that must not
change plans and diff the two directories:

    python benchmarks/dump_plans.py --out /tmp/before   # on the old tree
    python benchmarks/dump_plans.py --out /tmp/after    # on the new one
    diff -r /tmp/before /tmp/after

The graphs are the golden graphs (tests/test_schedule_goldens.py), inference and one training
step, and GPT-2 and ResNet from the model zoo (inference and training), on every shipped
Triton profile and on the host's C++."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_schedule_goldens import PROFILES, graphs  # noqa: E402

import torch_hetero  # noqa: E402
from torch_hetero.errors import GraphFallbackWarning  # noqa: E402
from torch_hetero.tools import model_zoo  # noqa: E402
from torch_hetero.tools.report import compile_and_run, report_of  # noqa: E402


def report_text(fn, inputs, device: str, train: bool) -> str:
    torch._dynamo.reset()
    if train:
        inputs = tuple(x.detach().requires_grad_(x.is_floating_point()) for x in inputs)

        def step(*args):
            out = fn(*args)
            if isinstance(out, tuple):  # a golden graph returning several tensors: one loss over all
                out = torch.cat([o.float().flatten() for o in out])
            out = out if isinstance(out, torch.Tensor) else zoo_output(out)
            out.float().pow(2).mean().backward()
        graphs_ = compile_and_run(step, inputs, {}, {"device": device})
    else:
        with torch.no_grad():
            graphs_ = compile_and_run(fn, inputs, {}, {"device": device})
    report = report_of(graphs_, device)
    parts = [str(report), "## schedule", report.schedule]
    for kernel in report.kernels:
        parts.append(f"{kernel.name} {kernel.estimate_us!r} {kernel.bytes!r} {kernel.flops!r} {kernel.bound}")
    for call in report.externs + report.fallback_calls:
        parts.append(f"{call.name} {call.estimate_us!r} {call.bytes!r} {call.flops!r} {call.bound} {call.tiling}")
    for name in sorted(report.code):
        parts += [f"## {name}", report.code[name]]
    return "\n".join(parts) + "\n"


def zoo_output(out):
    return out.logits if hasattr(out, "logits") else out.pooler_output


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", default="gpt2,resnet")
    args = parser.parse_args()
    warnings.simplefilter("error", GraphFallbackWarning)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = {name: (fn, inputs) for name, (fn, inputs) in graphs().items()}
    for name in args.models.split(","):
        zoo = model_zoo.build(name)
        cases[name] = (zoo.model, zoo.inputs)
    for name, (fn, inputs) in cases.items():
        for device in ["cpu"] + PROFILES:
            for train in (False, True):
                if train and not any(x.is_floating_point() for x in inputs) and not isinstance(fn, torch.nn.Module):
                    continue
                text = report_text(fn, inputs, device, train)
                (out / f"{name}.{device}.{'train' if train else 'infer'}.txt").write_text(text)
        print(name, flush=True)


if __name__ == "__main__":
    main()
