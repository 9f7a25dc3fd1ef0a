"""Vendor kernel libraries decide what is an extern: attention and convolution are ATen calls
only where the profile declares a library for them.  Without an attention library SDPA is our
generated flash attention (one kernel each way, tests/test_generated_attention.py); with one
it is an extern named by the device's op, never a CPU-only kernel; a convolution without a
library is generated."""
import pytest
import torch
import torch.nn.functional as F

import torch_hetero
from torch_hetero.device_models import get_profile, list_profiles
from torch_hetero.errors import ProfileError
from utils import check, profile_variant

TRITON_PROFILES = [name for name in list_profiles() if name != "cpu" and get_profile(name).target.language == "triton"]
CPU_ONLY = ("_for_cpu", "mkldnn")


def _qkv(kv_heads=4, seq=8):
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(2, 4, seq, 16, generator=gen), torch.randn(2, kv_heads, seq, 16, generator=gen),
            torch.randn(2, kv_heads, seq, 16, generator=gen))


MASKS = {
    "no_mask": {},
    "causal": {"is_causal": True},
    "bool_mask": {"attn_mask": torch.rand(8, 8, generator=torch.Generator().manual_seed(1)) > 0.3},
    "additive_mask": {"attn_mask": torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))},
}


def _sdpa(**kwargs):
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kwargs)


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("device", ["rivos-sim", "h100"])
def test_sdpa_matches_eager(device, mask, grad):
    check(_sdpa(**MASKS[mask]), *_qkv(), grad=grad, atol=1e-5, rtol=1e-5, options={"device": device}, native=True)


@pytest.mark.parametrize("device", ["rivos-sim", "h100"])
def test_grouped_query_sdpa_matches_eager(device):
    check(_sdpa(is_causal=True, enable_gqa=True), *_qkv(kv_heads=2), grad=True, atol=1e-5, rtol=1e-5,
          options={"device": device}, native=True)


def test_sdpa_under_the_triton_interpreter():
    """rivos-sim's SDPA as the generated flash attention run by the interpreter."""
    check(_sdpa(**MASKS["bool_mask"]), *_qkv(), grad=True, atol=1e-5, rtol=1e-5,
          options={"device": "rivos-sim", "executor": "interpret"}, native=True)


def _training_report(fn, inputs, device):
    def step(*args):
        out = fn(*args)
        out.sum().backward()
        return out
    return torch_hetero.explain(step, *[x.clone().requires_grad_() for x in inputs], device=device)


def _report_text(report) -> str:
    return "\n".join([str(report), report.schedule] + [f"{c.name} {c.op} {c.tiling}" for c in report.fallback_calls])


@pytest.mark.parametrize("device", TRITON_PROFILES)
def test_no_cpu_only_kernel_in_a_triton_report(device):
    target = get_profile(device).target
    report = _training_report(_sdpa(is_causal=True), _qkv(), device)
    text = _report_text(report)
    assert not any(name in text for name in CPU_ONLY), text
    attention = [c.op for c in report.externs if "attention" in c.op]
    if target.attention:
        assert attention == [target.attention_op, f"{target.attention_op}_backward"], text
        assert all("CPU flash attention kernel in its place" in c.tiling for c in report.externs), text
    else:
        assert attention == [] and not report.fallbacks, text
        generated = [op for k in report.kernels for op in k.aten_ops if "attention" in op]
        assert generated == ["aten.scaled_dot_product_attention", "aten.scaled_dot_product_attention_backward"], text


def test_host_keeps_its_cpu_attention_kernel():
    report = torch_hetero.explain(_sdpa(is_causal=True), *_qkv(), device="cpu")
    assert [c.op for c in report.externs] == ["aten._scaled_dot_product_flash_attention_for_cpu"]


def _conv(x, w):
    return F.conv2d(x, w, padding=1)


@pytest.mark.parametrize("device", ["rivos-sim", "h100"])
def test_convolution_is_an_extern_only_with_a_library_else_generated(device):
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 3, 8, 8, generator=gen), torch.randn(4, 3, 3, 3, generator=gen)
    report = _training_report(_conv, (x, w), device)
    text = _report_text(report)
    assert not any(name in text for name in CPU_ONLY), text
    ops = {"extern": [c.op for c in report.externs], "fallback": [c.op for c in report.fallback_calls]}
    if device == "h100":  # priced against our implicit GEMM per gradient, and cuDNN preferred at this size
        assert ops == {"extern": ["aten.convolution"] + ["aten.convolution_backward"] * 2, "fallback": []}, text
        assert all("library call: cuDNN, declared by the profile; est. cuDNN" in line
                   for line in report.schedule.splitlines() if line.startswith("extern")), report.schedule
    else:
        assert ops == {"extern": [], "fallback": []}, text  # generated (tests/test_generated_convolution.py)
    check(_conv, x, w, grad=True, atol=1e-4, rtol=1e-4, options={"device": device})


def test_a_library_attention_is_estimated_by_its_matrix_work(tmp_path):
    """h100's flash attention call costs its FLOPs at the profile's ``attention_efficiency`` of
    the bf16 peak, not only a launch and its bytes; a GPU profile declaring an attention library
    must state that figure."""
    q = torch.randn(1, 8, 1024, 64, dtype=torch.bfloat16)
    [call] = torch_hetero.explain(_sdpa(), q, q, q, device="h100").externs
    profile = get_profile("h100")
    flops = 4 * 8 * 1024 * 1024 * 64
    assert call.estimate_us >= flops / (profile.peak_flops("bf16", matrix=True) * profile.attention_efficiency) * 1e6
    path = profile_variant(tmp_path, "h100", "h100-no-figure", ("attention_efficiency = 0.45\n", ""))
    with pytest.raises(ProfileError, match="missing libraries.attention_efficiency"):
        get_profile(path)


def test_attention_is_priced_against_the_library():
    """h100 declares FlashAttention and cuDNN: each SDPA call is priced against our flash
    attention in its GPU tile (``tiling.GPU_ATTENTION_TILES``), and the schedule says which won
    and by how much — the library at head dim 128, ours at 64 over 2048 keys."""
    for dim, generated in ((128, False), (64, True)):
        q = torch.randn(8, 16, 2048, dim, dtype=torch.bfloat16)
        report = torch_hetero.explain(_sdpa(is_causal=True), q, q, q, device="h100")
        assert bool(report.kernels) == generated and bool(report.externs) != generated, report.schedule
        decision = ("generated as flash attention in the device model's tile: est." if generated else
                    "library call: flash attention, cuDNN, declared by the profile; est. flash attention, cuDNN")
        assert decision in report.schedule and "vs" in report.schedule, report.schedule
