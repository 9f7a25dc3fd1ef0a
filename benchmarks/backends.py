"""hetero vs Inductor vs eager on model blocks: median time per call and speedup over eager,
interleaved rounds (so machine noise hits every backend alike), each output checked.

    python benchmarks/backends.py [--gpu] [--dtypes fp32,bf16] [--rounds 20]

On the host (default) hetero runs its C++ kernels; with ``--gpu`` everything moves to the
visible GPU and hetero runs its Triton kernels natively, for the GPU's profile."""
from __future__ import annotations

import argparse
import warnings

import torch
from timing import interleaved_ms

from torch_hetero.errors import GraphFallbackWarning
from torch_hetero.tools.examples import Block, TinyGPT

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def models(dtype):
    torch.manual_seed(0)
    yield "GPT-2-style block", Block(256, 4).to(dtype).eval(), (torch.randn(4, 128, 256, dtype=dtype),)
    yield "TinyGPT", TinyGPT().to(dtype).eval(), (torch.randint(0, 512, (4, 64)),)
    mlp = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.GELU(), torch.nn.Linear(2048, 512))
    yield "MLP", mlp.to(dtype).eval(), (torch.randn(256, 512, dtype=dtype),)


def gpu_profile() -> str:
    name = torch.cuda.get_device_name()
    return next((p for part, p in (("H200", "h200"), ("H100", "h100"), ("A100", "a100"), ("MI300", "mi300x"))
                 if part in name), "h100")


def main():
    warnings.simplefilter("error", GraphFallbackWarning)  # it measures compiled graphs: one run eagerly is an error
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    device = "cuda" if args.gpu else "cpu"
    options = {"device": gpu_profile(), "executor": "native"} if args.gpu else {}
    sync = torch.cuda.synchronize if args.gpu else (lambda: None)
    where = torch.cuda.get_device_name() if args.gpu else f"host, {torch.get_num_threads()} threads"
    print(f"{where}; median of {args.rounds} interleaved rounds; ms per call")
    print(f"{'model':<22}{'dtype':>6}{'eager':>9}{'inductor':>10}{'hetero':>9}{'ind. x':>8}{'het. x':>8}"
          f"{'ind. err':>10}{'het. err':>10}")
    for dtype_name in args.dtypes.split(","):
        for name, model, inputs in models(DTYPES[dtype_name]):
            model, inputs = model.to(device), tuple(x.to(device) for x in inputs)
            torch._dynamo.reset()
            variants = {"eager": model, "inductor": torch.compile(model),
                        "hetero": torch.compile(model, backend="hetero", options=options)}
            with torch.no_grad():
                expected = model(*inputs).float()
                errors = [(variants[k](*inputs).float() - expected).abs().max().item() for k in ("inductor", "hetero")]
            ms = interleaved_ms(variants, inputs, args.rounds, sync)
            print(f"{name:<22}{dtype_name:>6}{ms['eager']:>9.3f}{ms['inductor']:>10.3f}{ms['hetero']:>9.3f}"
                  f"{ms['eager'] / ms['inductor']:>7.2f}x{ms['eager'] / ms['hetero']:>7.2f}x"
                  f"{errors[0]:>10.1e}{errors[1]:>10.1e}")


if __name__ == "__main__":
    main()
