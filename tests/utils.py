"""Shared helpers for the torch_hetero test suite."""

import dataclasses

import torch
import torch.utils._pytree as pytree

import torch_hetero  # noqa: F401  (registers the "hetero" backend)
from torch_hetero.backend import collect_compiled_graphs, hetero_backend
from torch_hetero.device_models import get_profile


def compile_hetero(fn, dynamic=False, options=None, native=False):
    """torch.compile with the hetero backend.  A graph that runs eagerly fails the test (its
    GraphFallbackWarning is an error: pyproject.toml); per-op ATen fallbacks run, unless
    ``native``: then strict mode makes any fallback raise."""
    return torch.compile(fn, backend="hetero", dynamic=dynamic, options={"strict": native, **(options or {})})


def _copy(x, requires_grad):
    """Copy a tensor keeping its exact size/stride/offset (so transposed,
    strided and expanded inputs stay non-contiguous); pass other values."""
    if not isinstance(x, torch.Tensor):
        return x
    y = torch.empty(0, dtype=x.dtype, device=x.device).set_(
        x.untyped_storage().clone(), x.storage_offset(), x.size(), x.stride()
    )
    return y.requires_grad_(requires_grad and y.is_floating_point())


def _assert_same(actual, expected, atol, rtol, what):
    actual, actual_spec = pytree.tree_flatten(actual)
    expected, expected_spec = pytree.tree_flatten(expected)
    assert actual_spec == expected_spec, f"{what}: structure {actual_spec} != {expected_spec}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        msg = f"{what}[{i}]"
        if not isinstance(e, torch.Tensor):
            assert a == e, f"{msg}: {a!r} != {e!r}"
            continue
        assert isinstance(a, torch.Tensor), f"{msg}: expected a tensor, got {type(a)}"
        assert a.dtype == e.dtype, f"{msg}: dtype {a.dtype} != {e.dtype}"
        exact = not (e.is_floating_point() or e.is_complex())
        torch.testing.assert_close(
            a.detach(), e.detach(),
            atol=0 if exact else atol, rtol=0 if exact else rtol,
            equal_nan=True, msg=lambda m: f"{msg}: {m}",
        )


def check(fn, *args, dynamic=False, grad=False, atol=1e-5, rtol=1e-5, options=None, native=False):
    """Compare `fn(*args)` in eager against the hetero backend.

    Outputs may be nested tuples/lists; dtypes must match, floats are compared
    with atol/rtol and ints/bools exactly.  With grad=True the floating-point
    tensor args are made leaves requiring grad, the loss
    sum((out.float() * w).sum()) over differentiable outputs (w: fixed random
    weights) is backpropagated and the input gradients are compared as well.
    ``options``: extra compile options (e.g. a device profile and executor);
    ``native``: every op must be lowered natively (no ATen fallback).
    Returns the compiled outputs.
    """
    torch._dynamo.reset()

    def run(f):
        inputs = [_copy(a, grad) for a in args]
        out = f(*inputs)
        return inputs, out

    eager_inputs, expected = run(fn)
    compiled_inputs, actual = run(compile_hetero(fn, dynamic=dynamic, options=options, native=native))
    _assert_same(actual, expected, atol, rtol, "output")
    if not grad:
        return actual

    def grads(inputs, out):
        outs = [o for o in pytree.tree_leaves(out)
                if isinstance(o, torch.Tensor) and o.requires_grad]
        leaves = [x for x in inputs if isinstance(x, torch.Tensor) and x.requires_grad]
        assert outs and leaves, "grad=True but nothing is differentiable"
        gen = torch.Generator().manual_seed(0)
        loss = sum((o.float() * torch.randn(o.shape, generator=gen)).sum() for o in outs)
        return torch.autograd.grad(loss, leaves, allow_unused=True)

    _assert_same(grads(compiled_inputs, actual), grads(eager_inputs, expected),
                 atol, rtol, "grad")
    return actual


def compiled_kernels(fn, inputs, options, native=False):
    """(output, the generated kernels in the target profile's language, whatever ran them) of
    one compiled run without autograd (``native``: as in ``compile_hetero``)."""
    out, graphs = _compiled_graphs(fn, inputs, options, native)
    return out, [k for _, g, profile in graphs for k in g.rendered[get_profile(profile).target.language]]


def planned_kernels(fn, inputs, options):
    """(output, the plan's kernels: ``plan.KernelPlan``) of one compiled run without autograd."""
    out, graphs = _compiled_graphs(fn, inputs, options, False)
    return out, [k for _, g, _ in graphs for k in g.plan.kernels]


def _compiled_graphs(fn, inputs, options, native):
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=lambda gm, ex: hetero_backend(gm, ex, options={"strict": native, **options}))
    with torch.no_grad(), collect_compiled_graphs() as graphs:
        out = compiled(*inputs)
    return out, graphs


def assert_online_reads_once(kernel, capability: str) -> None:
    """``kernel`` (an online pass planned on h100) rereads its row with ``capability`` off and
    not with it on, and the cost model prices the pass saved."""
    from torch_hetero.planning.cost_model import MemoryModel, estimate_kernel, reread_bytes
    h100 = get_profile("h100")
    without = dataclasses.replace(h100, target=dataclasses.replace(h100.target, **{capability: False}))
    row = kernel.cost.reads["arg0"]
    assert kernel.cost.reread["arg0"] == row  # two passes planned apart ...
    assert reread_bytes(kernel.cost, h100, "arg0") == 0  # ... one online
    assert reread_bytes(kernel.cost, without, "arg0") == row
    fast = estimate_kernel(kernel.cost, h100, MemoryModel(h100), torch.float32).time_us
    slow = estimate_kernel(kernel.cost, without, MemoryModel(without), torch.float32).time_us
    assert fast < slow


def profile_variant(directory, profile: str, name: str, *replacements) -> str:
    """The path of a copy of the shipped ``profile`` named ``name``, each ``(old, new)`` text of
    ``replacements`` replaced (each must occur): a device differing from a shipped one in a few
    figures or libraries."""
    import pathlib
    text = (pathlib.Path(torch_hetero.__file__).parent / "device_models" / "profiles" / f"{profile}.toml").read_text()
    for old, new in ((f'name = "{profile}"', f'name = "{name}"'), *replacements):
        assert old in text, old
        text = text.replace(old, new)
    path = pathlib.Path(directory) / f"{name}.toml"
    path.write_text(text)
    return str(path)
