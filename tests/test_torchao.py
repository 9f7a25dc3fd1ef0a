"""Models quantized with torchao, the PyTorch quantization library (``quantize_``), compile
natively and match torchao's own eager output: int8 weight-only (traced as the dequantized
weight's matmul) and int8 dynamic activations with int8 weights (``_int_mm``, uint8 x int8).  torchao's float8 configs refuse to run
without a CUDA GPU of sm_89 or later, so fp8 is tested as the same recipe in plain torch
(test_float8.py)."""
import pytest
import torch
from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

import torch_hetero
from utils import check

HOST = {"device": "cpu"}
H100 = {"device": "h100", "executor": "interpret"}


def quantized_mlp(config):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 32))
    quantize_(model.to(torch.bfloat16), config)
    return model


@pytest.mark.parametrize("options", [pytest.param(HOST, id="cpu"), pytest.param(H100, id="h100")])
def test_int8_weight_only_compiles_with_no_fallback(options):
    model = quantized_mlp(Int8WeightOnlyConfig())
    with torch.no_grad():
        check(model, torch.randn(16, 64, dtype=torch.bfloat16), atol=2e-2, rtol=2e-2, options=options, native=True)


def test_int8_dynamic_activations_compile_with_no_fallback():
    """Its uint8 x int8 ``_int_mm`` included (the template's column-sum correction)."""
    model = quantized_mlp(Int8DynamicActivationInt8WeightConfig())
    x = torch.randn(16, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        check(model, x, atol=0, rtol=0, options=HOST, native=True)
        check(model, x, atol=2e-2, rtol=2e-2, options=H100, native=True)
        assert not torch_hetero.explain(model, x, device="h100").fallbacks
