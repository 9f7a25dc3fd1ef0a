"""Values of dtypes we generate no code for (complex, uint16/32/64, float8_e8m0fnu): the ops
that read or make them run as per-op ATen fallbacks, and the rest of the graph still compiles
(the other 8-bit floats are generated: test_float8.py)."""

import pytest
import torch

import torch_hetero
from torch_hetero.__main__ import main
from torch_hetero.device_models import list_profiles
from utils import check

HOST_AND_TRITON = [pytest.param({}, id="cpu"), pytest.param({"device": "h100"}, id="h100")]


def spectral(x, w):
    """A spectral layer: the real FFT's magnitude between two generated pointwise steps."""
    return torch.fft.rfft(torch.relu(x)).abs() @ w + 1


def complex_multiply(x, y):
    product = torch.view_as_complex(x) * torch.view_as_complex(y)
    return torch.view_as_real(product).sin() + product.real.unsqueeze(-1)


def fallbacks_and_kernels(fn, *args, options):
    torch._dynamo.reset()
    report = torch_hetero.explain(fn, *args, **options)
    return report.fallbacks, [op for kernel in report.kernels for op in kernel.aten_ops]


@pytest.mark.parametrize("options", HOST_AND_TRITON)
def test_an_fft_falls_back_and_its_neighbours_compile(options):
    torch.manual_seed(0)
    x, w = torch.randn(4, 16), torch.randn(9, 5)
    check(spectral, x, w, grad=True, atol=1e-4, rtol=1e-4, options=options)
    fallbacks, fused = fallbacks_and_kernels(spectral, x, w, options=options)
    assert fallbacks == {"aten._fft_r2c": 1, "aten.abs": 1}
    assert {"aten.relu", "aten.add"} <= set(fused)


@pytest.mark.parametrize("options", HOST_AND_TRITON)
def test_complex_values_fall_back_per_op(options):
    torch.manual_seed(0)
    x, y = torch.randn(4, 8, 2), torch.randn(4, 8, 2)
    check(complex_multiply, x, y, grad=True, atol=1e-5, rtol=1e-5, options=options)
    fallbacks, fused = fallbacks_and_kernels(complex_multiply, x, y, options=options)
    assert set(fallbacks) == {"aten.view_as_complex", "aten.mul", "aten.view_as_real"}
    assert {"aten.sin", "aten.add"} <= set(fused)


def test_complex_values_under_the_triton_interpreter():
    torch.manual_seed(0)
    check(complex_multiply, torch.randn(4, 8, 2), torch.randn(4, 8, 2),
          options={"device": "h100", "executor": "interpret"})


@pytest.mark.parametrize("options", HOST_AND_TRITON)
def test_complex_graph_inputs_and_outputs_pass_through(options):
    """A complex input returned as it is, transposed, and through a fallback op (cat)."""
    torch.manual_seed(0)
    z = torch.randn(3, 4, dtype=torch.complex64)
    check(lambda z, x: (z, z.t(), torch.cat([z, z]) * 2, x.exp()), z, torch.randn(3), options=options)
    check(lambda z: torch.view_as_real(z).sum(-1), z.t(), options=options)  # a strided complex input


@pytest.mark.parametrize("options", HOST_AND_TRITON)
def test_e8m0_scales_are_made_by_aten(options):
    """float8_e8m0fnu (an MX block scale: a power of two) has no generated conversion."""
    check(lambda x: (x.abs() + 1).to(torch.float8_e8m0fnu).to(torch.float32) * x, torch.randn(32), options=options)
    fallbacks, _ = fallbacks_and_kernels(lambda x: (x.abs() + 1).to(torch.float8_e8m0fnu).to(torch.float32) * x,
                                         torch.randn(32), options=options)
    assert fallbacks == {"aten._to_copy": 2}


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
def test_wide_unsigned_integers_are_converted_by_aten(dtype):
    check(lambda x: x.to(torch.float32).sin(), torch.arange(6).to(dtype))


def test_the_audit_of_a_spectral_model_lists_the_fft_as_debt_on_every_device(tmp_path, capsys):
    assert main(["audit", "torch_hetero.tools.examples:spectral_mixer", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for device in list_profiles():
        assert f"debt on {device}: aten._fft_r2c × 1 in mixing" in out
