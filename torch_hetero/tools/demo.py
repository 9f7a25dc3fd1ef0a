"""The README's main command: compile a real transformer for this host and check it against
eager, then audit it across every device profile and print the side-by-side summary."""
from __future__ import annotations

import time

import torch

from .audit import audit
from ..device_models import list_profiles

REPORT_DIR = "audit-report"


def build_model(name: str):
    """(model, inputs, main output of the model's result) for the demo's model."""
    if name == "gpt2":
        from .model_zoo import build
        zoo = build("gpt2")  # Hugging Face GPT-2 from a small config, random weights
        return zoo.model, zoo.inputs, zoo.main_output
    from .examples import tiny_gpt
    model, inputs = tiny_gpt()
    return model, inputs, lambda out: out


def run_demo(name: str, show_code: bool = False) -> int:
    model, inputs, main_output = build_model(name)
    with torch.no_grad():
        expected = main_output(model(*inputs))
        start = time.perf_counter()
        actual = main_output(torch.compile(model, backend="hetero")(*inputs))
        compile_s = time.perf_counter() - start
    error = (actual - expected).abs().max().item()
    print(f"model: {name} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters), "
          f"input {tuple(inputs[0].shape)}")
    print(f"compiled for this host: first call (compile + run) {compile_s:.2f} s; "
          f"max |compiled - eager| = {error:.2e}\n")
    result = audit(model, *inputs, devices=list_profiles())
    print(f"\n{result}")
    paths = result.write(REPORT_DIR)
    print("\nfull report (kernels, fusion reasons, debt by layer, ahead-of-time builds): "
          + ", ".join(paths.values()))
    if show_code and result.devices[0].report is not None:  # the host's code
        for file_name, source in result.devices[0].report.code.items():
            print(f"\n===== {file_name} =====\n{source}")
    return 0 if error < 1e-3 and all(d.error is None for d in result.devices) else 1
