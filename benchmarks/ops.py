"""Common single ops and small patterns (softmax, norms, activations, losses, reductions),
eager vs Inductor vs hetero on the host: where a real model's time hides and the model suite
does not look (its attention is ATen's SDPA, its loss a mean of squares).

    python benchmarks/ops.py [--rounds 50] [--threads 1] [--only softmax,gelu]

The three run in one process in interleaved rounds (timing.interleaved_ms); medians in µs
per call, including each compiler's per-call overhead, and a correctness check of each output
(training cases: of the input's gradient).  Rows where hetero is slower than eager by more
than 10 % are marked."""
from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn.functional as F

from torch_hetero.errors import GraphFallbackWarning
from timing import interleaved_ms

N, D, V = 256, 2048, 2048   # rows, row length, vocabulary


def _rms_norm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def cases():
    """name → (function, inputs factory, training): a training case runs forward and
    backward and returns the input's gradient."""
    x = lambda: (torch.randn(N, D),)   # noqa: E731
    return {
        "softmax": (lambda v: v.softmax(-1), x, False),
        "softmax short rows (attention 16x65x65)": (lambda v: (v * 0.125).softmax(-1),
                                                    lambda: (torch.randn(16, 65, 65),), False),
        "log_softmax": (lambda v: v.log_softmax(-1), x, False),
        "amax": (lambda v: v.amax(-1), x, False),
        "argmax": (lambda v: v.argmax(-1), x, False),
        "sum rows": (lambda v: v.sum(-1), x, False),
        "sum columns": (lambda v: v.sum(0), x, False),
        "var_mean": (lambda v: torch.var_mean(v, -1), x, False),
        "layer_norm": (lambda v, w, b: F.layer_norm(v, (D,), w, b),
                       lambda: (torch.randn(N, D), torch.randn(D), torch.randn(D)), False),
        "rms_norm": (_rms_norm, lambda: (torch.randn(N, D), torch.randn(D)), False),
        "gelu": (F.gelu, x, False),
        "gelu tanh": (lambda v: F.gelu(v, approximate="tanh"), x, False),
        "silu * mul": (lambda a, b: F.silu(a) * b, lambda: (torch.randn(N, D), torch.randn(N, D)), False),
        "add + relu": (lambda a, b: torch.relu(a + b), lambda: (torch.randn(N, D), torch.randn(N, D)), False),
        "cumsum": (lambda v: v.cumsum(-1), x, False),
        "transpose copy": (lambda v: v.t().contiguous(), x, False),
        "cross_entropy fwd+bwd": (lambda v, t: F.cross_entropy(v, t),
                                  lambda: (torch.randn(N, V, requires_grad=True), torch.randint(0, V, (N,))), True),
        "layer_norm fwd+bwd": (lambda v, w, b: F.layer_norm(v, (D,), w, b).pow(2).mean(),
                               lambda: (torch.randn(N, D, requires_grad=True), torch.randn(D), torch.randn(D)), True),
        "gelu fwd+bwd": (lambda v: F.gelu(v).pow(2).mean(), lambda: (torch.randn(N, D, requires_grad=True),), True),
        "softmax fwd+bwd": (lambda v: v.softmax(-1).pow(2).mean(), lambda: (torch.randn(N, D, requires_grad=True),), True),
    }


def _training(fn):
    def step(v, *rest):
        v.grad = None
        fn(v, *rest).backward()
        return v.grad
    return step


def main():
    warnings.simplefilter("error", GraphFallbackWarning)  # it measures compiled graphs: one run eagerly is an error
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    wanted = [w for w in args.only.split(",") if w]
    print(f"{args.threads} thread(s), median of {args.rounds} interleaved rounds, µs per call")
    print(f"{'case':<42}{'eager':>9}{'Inductor':>10}{'hetero':>9}{'Ind. ×':>8}{'het. ×':>8}{'max err':>10}")
    for name, (fn, make_inputs, training) in cases().items():
        if wanted and not any(w in name for w in wanted):
            continue
        inputs = make_inputs()
        torch._dynamo.reset()
        step = _training(fn) if training else fn
        variants = {"eager": step, "inductor": _training(torch.compile(fn)) if training else torch.compile(fn),
                    "hetero": _training(torch.compile(fn, backend="hetero")) if training
                    else torch.compile(fn, backend="hetero")}
        with torch.no_grad() if not training else torch.enable_grad():
            expected = step(*inputs)
            error = max(_max_error(variant(*inputs), expected) for variant in list(variants.values())[1:])
        ms = interleaved_ms(variants, inputs, args.rounds, no_grad=not training)
        us = {k: v * 1e3 for k, v in ms.items()}
        flag = "  << slower than eager" if us["hetero"] > 1.1 * us["eager"] else ""
        print(f"{name:<42}{us['eager']:>9.0f}{us['inductor']:>10.0f}{us['hetero']:>9.0f}"
              f"{us['eager'] / us['inductor']:>8.2f}{us['eager'] / us['hetero']:>8.2f}{error:>10.1e}{flag}")


def _max_error(actual, expected) -> float:
    actual = actual if isinstance(actual, tuple) else (actual,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    return max((a.double() - e.double()).abs().max().item() for a, e in zip(actual, expected))


if __name__ == "__main__":
    main()
