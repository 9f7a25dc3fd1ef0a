"""A seeded random-graph generator for differential fuzzing: chains of pointwise ops, broadcasts,
reductions, softmax, views and concatenation over odd, size-1 and non-contiguous shapes.  Each
graph is a plain Python function plus its inputs, so a failure prints as a reproducible recipe
(the seed) and the op list.  Used by ``test_fuzz.py`` (a bounded number) and ``benchmarks/fuzz.py``."""
from __future__ import annotations

import random

import torch

UNARY = ["exp", "tanh", "sigmoid", "relu", "neg", "abs", "sin_bounded", "sqrt_abs", "square"]
BINARY = ["add", "mul", "sub", "maximum", "div_safe"]
REDUCTIONS = ["sum", "amax", "mean", "var"]


def _unary(name, x):
    if name == "sqrt_abs":
        return x.abs().sqrt()
    if name == "square":
        return x * x
    if name == "sin_bounded":
        # a periodic function of a large argument (sin(exp(4x)) reaches 1e6, seed 2220 before
        # this) amplifies the last-ulp differences of what computed it into O(1) ones, which no
        # compiler can match; tanh keeps the argument within [-4, 4]
        return torch.sin(torch.tanh(x) * 4)
    return getattr(torch, name)(x)


def _binary(name, a, b):
    if name == "div_safe":
        return a / (b.abs() + 1)
    return getattr(torch, name)(a, b)


def _shape(rng: random.Random) -> list:
    return [rng.choice([1, 2, 3, 5, 7, 16, 33]) for _ in range(rng.randint(1, 4))]


def _input(rng: random.Random, shape: list) -> torch.Tensor:
    """A float32 input, sometimes non-contiguous (transposed storage or a strided slice)."""
    generator = torch.Generator().manual_seed(rng.randint(0, 2**31))
    kind = rng.choice(["contiguous", "transposed", "sliced"]) if len(shape) >= 2 else "contiguous"
    if kind == "transposed":
        return torch.randn(shape[::-1], generator=generator).permute(*reversed(range(len(shape))))
    if kind == "sliced":
        return torch.randn([*shape[:-1], shape[-1] * 2], generator=generator)[..., ::2]
    return torch.randn(shape, generator=generator)


def random_graph(seed: int):
    """(fn, inputs, recipe): a function of 1-2 tensors, built from ``seed``."""
    rng = random.Random(seed)
    shape = _shape(rng)
    count = rng.randint(1, 2)
    inputs = [_input(rng, shape if i == 0 else _broadcastable(rng, shape)) for i in range(count)]
    steps = []
    for _ in range(rng.randint(2, 7)):
        kind = rng.choice(["unary", "unary", "binary", "binary", "reduce", "softmax", "view", "cat"])
        if kind == "unary":
            steps.append(("unary", rng.choice(UNARY)))
        elif kind == "binary":
            steps.append(("binary", rng.choice(BINARY), rng.randrange(count)))
        elif kind == "reduce":
            steps.append(("reduce", rng.choice(REDUCTIONS), rng.random(), rng.random() < 0.5))
        elif kind == "softmax":
            steps.append(("softmax", rng.random()))
        elif kind == "view":
            steps.append(("view", rng.choice(["transpose", "flatten", "slice", "expand", "unsqueeze"]), rng.random()))
        else:
            steps.append(("cat", rng.random()))

    steps = _resolve(steps, inputs)

    def fn(*args):
        x = args[0]
        for step in steps:
            x = _apply(step, x, args)
        return x
    return fn, inputs, f"seed {seed}: shapes {[list(t.shape) for t in inputs]}, steps {steps}"


def _resolve(steps: list, inputs: list) -> list:
    """Decide shape-dependent choices once, eagerly, so the function has no data-dependent
    control flow: a binary op whose operands do not broadcast uses the other input's sum."""
    x, resolved = inputs[0], []
    for step in steps:
        if step[0] == "binary":
            other = inputs[step[2]]
            try:
                torch.broadcast_shapes(x.reshape(x.shape or (1,)).shape, other.shape)
                step = (*step, False)
            except RuntimeError:
                step = (*step, True)
        resolved.append(step)
        x = _apply(step, x, inputs)
    return resolved


def _broadcastable(rng: random.Random, shape: list) -> list:
    """``shape`` with some dims set to 1 (or leading dims dropped)."""
    out = [1 if rng.random() < 0.4 else s for s in shape]
    return out[rng.randint(0, len(out) - 1):]


def _dim(x: torch.Tensor, fraction: float) -> int:
    return min(int(fraction * x.dim()), x.dim() - 1)


def _apply(step, x, args):
    kind = step[0]
    if x.dim() == 0:
        x = x.reshape(1)
    if kind == "unary":
        return _unary(step[1], x)
    if kind == "binary":
        other = args[step[2]].sum() if step[3] else args[step[2]]
        return _binary(step[1], x, other)
    if kind == "reduce":
        name, fraction, keepdim = step[1:]
        dim = _dim(x, fraction)
        if name == "var":
            return x.var(dim, keepdim=keepdim, correction=0)
        return getattr(x, name)(dim, keepdim=keepdim)
    if kind == "softmax":
        return x.softmax(_dim(x, step[1]))
    if kind == "cat":
        return torch.cat([x, x * 2], dim=_dim(x, step[1]))
    view, fraction = step[1:]
    if view == "transpose" and x.dim() >= 2:
        return x.transpose(0, x.dim() - 1)
    if view == "flatten":
        return x.flatten()
    if view == "slice":
        dim = _dim(x, fraction)
        return x.narrow(dim, 0, max(x.shape[dim] // 2, 1))
    if view == "expand":
        return x.unsqueeze(0).expand(2, *x.shape)
    return x.unsqueeze(_dim(x, fraction))
