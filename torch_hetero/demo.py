"""The README's main command: compile a real transformer, compare with eager, explain it."""
from __future__ import annotations

import collections
import time

import torch

from .report import explain


def build_model(name: str):
    torch.manual_seed(0)
    if name == "gpt2":
        try:
            from transformers import GPT2Config, GPT2LMHeadModel
        except ImportError as error:
            raise SystemExit("the gpt2 demo needs Hugging Face transformers: pip install -e '.[demo]' "
                             f"(or run with --model tiny-gpt) [{error}]")
        config = GPT2Config(vocab_size=1000, n_positions=128, n_embd=128, n_layer=2, n_head=4,
                            bos_token_id=0, eos_token_id=0, use_cache=False, attn_implementation="eager")
        model = GPT2LMHeadModel(config).eval()
        return model, (torch.randint(0, 1000, (2, 32)),), lambda out: out.logits
    from .examples import TinyGPT
    return TinyGPT().eval(), (torch.randint(0, 512, (2, 32)),), lambda out: out


DEMO_DEVICES = ("cpu", "h100", "mi300x", "mtia-v2", "rivos-sim")


def run_demo(name: str, show_code: bool = False) -> int:
    model, inputs, logits = build_model(name)
    with torch.no_grad():
        expected = logits(model(*inputs))
        start = time.perf_counter()
        compiled = torch.compile(model, backend="hetero")
        actual = logits(compiled(*inputs))
        compile_s = time.perf_counter() - start
        reports = explain(model, *inputs, device=list(DEMO_DEVICES))
    error = (actual - expected).abs().max().item()
    print(f"model: {name} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters), "
          f"input {tuple(inputs[0].shape)}")
    print(f"first compiled call (compile + run): {compile_s:.2f} s; max |compiled - eager| = {error:.2e}\n")
    report = reports["cpu"]
    print(report)
    print("\nwhat-if estimates (compiled for each profile, run on this host; see `python -m torch_hetero devices`):")
    print(f"  {'device':<11}{'estimate us':>13}{'kernels':>9}{'externs':>9}{'fallbacks':>11}  bound (kernels)")
    for device, r in reports.items():
        bounds = collections.Counter(k.bound for k in r.kernels)
        print(f"  {device:<11}{r.estimate_us:>13.1f}{len(r.kernels):>9}{len(r.externs):>9}"
              f"{sum(r.fallbacks.values()):>11}  {dict(sorted(bounds.items()))}")
    if show_code:
        for name_, source in report.code.items():
            print(f"\n===== {name_} =====\n{source}")
    return 0 if error < 1e-3 else 1
