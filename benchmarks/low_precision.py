"""Low-precision host kernels against eager and Inductor, side by side in one process: an fp8
quantization (per-row dynamic scale, clamp, cast to e4m3fn), its dequantization, and a
per-row int8 quantization, each as a user writes it in plain torch; then an int8 weight-only
linear layer (bf16, a scale per output channel, as torchao traces it: ``tools/formats.py``'s)
at 1, 16 and 256 rows of a 4096 x 4096 weight, with Inductor+freezing and hetero+freeze too.

    python benchmarks/low_precision.py [--rows 256] [--cols 4096] [--rounds 30] [--threads 1]

Medians of interleaved rounds (``timing.interleaved_ms``), in microseconds; every compiled
output is checked against eager first (the casts byte for byte, the linear layers within bf16's
rounding: ATen's int8 kernel scales the fp32 sum before rounding once)."""
from __future__ import annotations

import argparse
import os
import sys

import torch

import torch_hetero  # noqa: F401  (registers the backend)
from torch_hetero.tools.formats import Int8WeightOnlyLinear

sys.path.insert(0, os.path.dirname(__file__))
from timing import interleaved_ms  # noqa: E402


def fp8_quantize(x):
    scale = 448.0 / x.abs().amax(-1, keepdim=True).clamp(min=1e-12)
    return (x * scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn), scale


def fp8_dequantize(q, scale):
    return q.to(torch.float32) / scale


def int8_quantize(x):
    scale = x.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127
    return (x / scale).round().clamp(-128, 127).to(torch.int8), scale


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.rows, args.cols) * torch.logspace(-3, 3, args.cols)
    q, scale = fp8_quantize(x)
    cases = {"fp8 quantize": (fp8_quantize, (x,)), "fp8 dequantize": (fp8_dequantize, (q, scale)),
             "int8 quantize": (int8_quantize, (x,))}
    print(f"{args.rows}x{args.cols}, {args.threads} thread(s), median of {args.rounds} interleaved rounds, us")
    print(f"{'case':<16} {'eager':>9} {'Inductor':>9} {'hetero':>9}  hetero/Inductor")
    for name, (fn, inputs) in cases.items():
        variants = {"eager": fn, "inductor": torch.compile(fn), "hetero": torch.compile(fn, backend="hetero")}
        expected = fn(*inputs)
        for variant in ("inductor", "hetero"):
            for got, want in zip(variants[variant](*inputs), expected):
                exact = not want.is_floating_point() or want.dtype.itemsize == 1
                assert torch.equal(got.view(torch.uint8), want.view(torch.uint8)) if exact else \
                    torch.allclose(got, want, rtol=1e-6, atol=0), f"{variant} {name} differs from eager"
        ms = interleaved_ms(variants, inputs, args.rounds)
        print(f"{name:<16} {ms['eager'] * 1e3:9.0f} {ms['inductor'] * 1e3:9.0f} {ms['hetero'] * 1e3:9.0f}  "
              f"{ms['hetero'] / ms['inductor']:.2f}")
    int8_weight_only(args.rounds)


def int8_weight_only(rounds: int) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(4096, 4096).to(torch.bfloat16)
    layer = Int8WeightOnlyLinear(linear.weight.detach(), linear.bias.detach()).eval()
    names = ("eager", "inductor", "inductor+freezing", "hetero", "hetero+freeze")
    print("\nint8 weight-only linear, 4096 x 4096 bf16, us")
    print(f"{'rows':<6}" + "".join(f"{n:>19}" for n in names))
    for rows in (1, 16, 256):
        torch._dynamo.reset()   # each row count compiles afresh (a frozen graph holds its shapes)
        variants = {"eager": layer, "inductor": torch.compile(layer),
                    "inductor+freezing": torch.compile(layer, options={"freezing": True}),
                    "hetero": torch.compile(layer, backend="hetero"),
                    "hetero+freeze": torch.compile(layer, backend="hetero", options={"freeze": True})}
        x = torch.randn(rows, 4096, dtype=torch.bfloat16)
        with torch.no_grad():
            want = layer(x)
            for name, variant in variants.items():
                assert torch.allclose(variant(x).float(), want.float(), rtol=2e-2, atol=2e-2), f"{name} differs from eager"
        ms = interleaved_ms(variants, (x,), rounds)
        print(f"{rows:<6}" + "".join(f"{ms[n] * 1e3:19.0f}" for n in names))


if __name__ == "__main__":
    main()
