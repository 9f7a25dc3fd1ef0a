"""What each profile's kernel libraries leave to generated code, to extern calls and to
fallbacks (debt), on the model zoo's real models, inference: per model and profile the
generated kernels, the extern calls, the fallback calls by op, and any CPU-only ATen kernel
(``*_for_cpu``, ``mkldnn_*``) a report names — which no Triton profile's report may hold.

    python benchmarks/library_debt.py [--models gpt2,llama,vit,resnet,qwen3_moe] [--devices rivos-sim,mtia-v2,h100]

Graphs are compiled for each profile and run once on this host (``explain``)."""
from __future__ import annotations

import argparse
import warnings

import torch

import torch_hetero
from torch_hetero.errors import FallbackWarning, GraphFallbackWarning
from torch_hetero.tools import model_zoo

CPU_ONLY = ("_for_cpu", "mkldnn")


def row(name: str, device: str) -> str:
    zoo = model_zoo.build(name)
    torch._dynamo.reset()
    with torch.no_grad():
        report = torch_hetero.explain(zoo.model, *zoo.inputs, device=device)
    calls = report.externs + report.fallback_calls
    cpu_only = sorted({c.name.split(": ", 1)[1] for c in calls if any(part in c.name for part in CPU_ONLY)})
    fallbacks = ", ".join(f"{op} x{n}" for op, n in sorted(report.fallbacks.items())) or "-"
    return (f"| {name} | {device} | {len(report.kernels)} | {len(report.externs)} | "
            f"{sum(report.fallbacks.values())} ({fallbacks}) | {', '.join(cpu_only) or '-'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2,llama,vit,resnet,qwen3_moe")
    parser.add_argument("--devices", default="rivos-sim,mtia-v2,h100")
    args = parser.parse_args()
    warnings.simplefilter("error", GraphFallbackWarning)   # a graph run eagerly has no plan to count
    warnings.simplefilter("ignore", FallbackWarning)       # counted in the table instead
    print("| model | profile | kernels | externs | fallback calls (debt) | CPU-only kernels named |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for device in args.devices.split(","):
            print(row(name, device), flush=True)


if __name__ == "__main__":
    main()
