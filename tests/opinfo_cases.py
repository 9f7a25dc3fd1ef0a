"""PyTorch's own OpInfo database as compiled-vs-eager cases, shared by the CI test
(``test_opinfo.py``: the first float32 sample of every op) and ``benchmarks/opinfo_sweep.py``
(every sample, more dtypes, gradients)."""
from __future__ import annotations

import warnings

import torch
import torch.utils._pytree as pytree

from torch_hetero.backend import collect_compiled_graphs, hetero_backend
from torch_hetero.compiler import EagerGraph
from torch_hetero.errors import GraphFallbackWarning

# Ops whose values are not comparable: only sizes and dtypes are checked (reviewed list).
UNCHECKED_VALUES = {
    "empty": "uninitialized memory", "empty_like": "uninitialized memory", "new_empty": "uninitialized memory",
    "new_empty_strided": "uninitialized memory", "empty_strided": "uninitialized memory",
    "empty_permuted": "uninitialized memory",
    "nn.functional.dropout": "random, and dynamo's RNG handling differs from eager's per-call seeding",
}
# Ops the sweep does not run (reviewed list, one reason each).
SKIPPED = {
    "to_sparse": "sparse layouts are out of scope (eager raises for this sample too)",
    "sparse.sampled_addmm": "sparse CSR inputs are out of scope",
    "sparse.mm": "sparse inputs are out of scope",
}


def float32_ops():
    from torch.testing._internal.common_methods_invocations import op_db
    return [op for op in op_db if torch.float32 in op.supported_dtypes("cpu") and op.name not in SKIPPED]


def run_sample(op, sample, grad: bool = False, rtol: float = 1e-4, atol: float = 1e-4) -> tuple:
    """Compile ``op`` on ``sample`` with the hetero backend, compare with eager (and, with
    ``grad``, the input gradients).  Returns (status, fallback ops, message): status is "ok",
    "eager" (the graph could not be compiled and ran eagerly, as it should, with a warning),
    "skip" (eager itself rejects the sample) or "wrong"; an exception propagates."""
    def fn(*args):
        return op(*args, *sample.args, **sample.kwargs)

    inputs = [sample.input]  # a tensor, or a list of them (cat, stack)
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=hetero_backend)
    torch.manual_seed(0)
    try:
        expected = fn(*_copies(inputs, grad))
    except Exception as error:  # noqa: BLE001 — eager rejects this sample: nothing to compare
        return "skip", [], f"eager raises {type(error).__name__}"
    if grad and op.name not in UNCHECKED_VALUES:
        try:
            expected_grads = _grads(fn, inputs)
        except Exception:  # noqa: BLE001 — eager has no derivative for this form: check values only
            grad = False
            expected = fn(*_copies(inputs, False))
    with warnings.catch_warnings(record=True) as caught, collect_compiled_graphs() as graphs:
        warnings.simplefilter("always")
        torch.manual_seed(0)
        actual = compiled(*_copies(inputs, grad))
    compiled = [graph for _, graph, _ in graphs if not isinstance(graph, EagerGraph)]
    fallbacks = sorted({name for graph in compiled for name in graph.fallbacks})
    eager = len(compiled) < len(graphs)
    assert eager == any(issubclass(w.category, GraphFallbackWarning) for w in caught), "one warning per eager graph"
    problem = _compare(actual, expected, op.name in UNCHECKED_VALUES, rtol, atol)
    if problem is None and grad and op.name not in UNCHECKED_VALUES:
        if expected_grads is not None:
            problem = _compare(_grads(compiled, inputs), expected_grads, False, rtol, atol)
            problem = problem and f"gradient {problem}"
    if problem is not None:
        return "wrong", fallbacks, problem
    return ("eager" if eager else "ok"), fallbacks, ""


def _copies(inputs, grad):
    def copy(x):
        return x.detach().clone().requires_grad_(grad and x.is_floating_point())
    return pytree.tree_map_only(torch.Tensor, copy, list(inputs))


def _compare(actual, expected, metadata_only: bool, rtol, atol):
    actual, expected = pytree.tree_leaves(actual), pytree.tree_leaves(expected)
    if len(actual) != len(expected):
        return f"{len(actual)} outputs, eager has {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        if not isinstance(e, torch.Tensor):
            if a != e and not (a != a and e != e):
                return f"output {i}: {a!r} != {e!r}"
            continue
        if a.shape != e.shape or a.dtype != e.dtype:
            return f"output {i}: {a.dtype}{list(a.shape)} vs eager {e.dtype}{list(e.shape)}"
        if metadata_only:
            continue
        try:
            exact = not (e.is_floating_point() or e.is_complex())
            torch.testing.assert_close(a.detach(), e.detach(), rtol=0 if exact else rtol, atol=0 if exact else atol,
                                       equal_nan=True)
        except AssertionError as error:
            return f"output {i}: {str(error).splitlines()[0]}"
    return None


def _grads(f, inputs):
    """Gradients of a fixed random projection of ``f``'s differentiable outputs w.r.t. its
    floating-point inputs, or None when nothing is differentiable."""
    leaves = _copies(inputs, True)
    torch.manual_seed(0)
    outs = [o for o in pytree.tree_leaves(f(*leaves)) if isinstance(o, torch.Tensor) and o.requires_grad]
    params = [x for x in pytree.tree_leaves(leaves) if isinstance(x, torch.Tensor) and x.requires_grad]
    if not outs or not params:
        return None
    generator = torch.Generator().manual_seed(0)
    loss = sum((o.float() * torch.randn(o.shape, generator=generator)).sum() for o in outs)
    return [g if g is not None else torch.zeros_like(p) for g, p in
            zip(torch.autograd.grad(loss, params, allow_unused=True), params)]
