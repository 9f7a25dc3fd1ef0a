"""Outputs keep eager's strides: a compiled graph returns views (of an input or of a computed
buffer) with the sizes, strides and storage offset eager gives them, and a view of an input
shares its storage.  AOTAutograd's backward graphs address saved tensors by these strides."""
import pytest
import torch

from utils import check, compile_hetero


def view_of_reused_buffer(x):
    y = x + 1
    return y.t(), (y * 2).sum(0), y[1:]


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("fn", [
    pytest.param(lambda x: (x + 1).t(), id="transposed-intermediate"),
    pytest.param(lambda x: (x * 2)[:, 1], id="column-of-intermediate"),  # gaps in its strides
    pytest.param(lambda x: x[1:], id="input-row-slice"),
    pytest.param(lambda x: x[:, 1:].t(), id="input-column-slice-transposed"),
    pytest.param(view_of_reused_buffer, id="views-of-one-buffer"),
])
def test_view_outputs_match_eager_strides(fn):
    x = torch.randn(4, 6)
    expected = fn(x)
    torch._dynamo.reset()
    actual = compile_hetero(fn, native=True)(x)
    torch.testing.assert_close(actual, expected)
    for a, e in zip(as_tuple(actual), as_tuple(expected)):
        if e._base is not None:
            assert a.stride() == e.stride(), f"stride {a.stride()} != eager {e.stride()}"
        if e._base is x:
            assert a.untyped_storage().data_ptr() == x.untyped_storage().data_ptr(), "input view copied"
            assert a.storage_offset() == e.storage_offset()


def test_a_backward_reading_saved_tensors_by_their_strides_matches_eager():
    """householder_product's backward graph reads saved columns by eager's strides."""
    # seeded: its gradient sums products of random reflectors, and an unlucky draw put one
    # element 1.1e-4 apart in relative terms (a summation order, not a wrong stride)
    g = torch.Generator().manual_seed(0)
    check(torch.linalg.householder_product, torch.randn(6, 5, generator=g), torch.randn(5, generator=g), grad=True,
          atol=1e-4, rtol=1e-4)
