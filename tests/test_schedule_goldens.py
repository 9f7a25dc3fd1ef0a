"""Golden plans: for every shipped profile and a set of canonical graphs, the schedule (kernels,
their nodes, tiling, fusion decisions and matmul tiles), the generated Triton and the host C++
are checked against ``tests/goldens/<graph>.<profile>.txt``.  ``EXPECTTEST_ACCEPT=1`` rewrites
them.

The set shows that the profile, not a fixed heuristic, decides: a long softmax row is
one-pass on mtia-v2 (384 KiB local SRAM) but looped on h100 (228 KiB) and mi300x (64 KiB);
bf16 matmul tiles differ across h100, a100, mi300x and mtia-v2; a user profile differing in
one field plans differently."""
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_hetero

GOLDENS = os.path.join(os.path.dirname(__file__), "goldens")
PROFILES = ["a100", "h100", "h200", "mi300x", "mtia-v1", "mtia-v2", "rivos-sim"]


def attention(q, k, v):
    scores = (q @ k.transpose(-1, -2)) / 8.0
    return scores.softmax(-1) @ v


def graphs():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(256, 1024), nn.GELU()).to(torch.bfloat16)
    return {
        "pointwise_chain": (lambda x, y: (x.sin() * 2 + y).relu(), (torch.randn(64, 256), torch.randn(64, 256))),
        "softmax_short": (lambda x: x.softmax(-1), (torch.randn(512, 128),)),
        "softmax_long": (lambda x: x.softmax(-1), (torch.randn(16, 65536),)),
        "layer_norm": (lambda x: F.layer_norm(x, (768,)), (torch.randn(256, 768),)),
        "linear_bias_gelu": (mlp, (torch.randn(128, 256, dtype=torch.bfloat16),)),
        "attention": (attention, tuple(torch.randn(2, 4, 64, 64) for _ in range(3))),
        "large_reduction": (lambda x: x.sum(), (torch.randn(1 << 20),)),
    }


def golden_text(fn, inputs, profile: str) -> str:
    with torch.no_grad():
        report = torch_hetero.explain(fn, *inputs, device=profile)
    cpp = report.code.get("inference.cpp", "")
    kernels = cpp[cpp.index("// ", cpp.index("hetero_set_num_threads")):] if cpp else "(no kernels)\n"
    triton = report.code.get("inference.triton.py", "")
    triton = triton[triton.index("@triton.jit\ndef kernel"):] if "def kernel" in triton else "(no kernels)\n"
    return (f"## schedule on {profile}\n{report.schedule}\n\n## Triton (the target's code)\n{triton}\n"
            f"## C++ (what runs on this host)\n{kernels}")


def check_golden(name: str, text: str) -> None:
    path = os.path.join(GOLDENS, f"{name}.txt")
    if os.environ.get("EXPECTTEST_ACCEPT") == "1":
        os.makedirs(GOLDENS, exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return
    assert os.path.exists(path), f"no golden {path}: run with EXPECTTEST_ACCEPT=1 to create it"
    with open(path) as f:
        expected = f.read()
    assert text == expected, f"{name} differs from {path} (EXPECTTEST_ACCEPT=1 regenerates it)"


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("graph", list(graphs()))
def test_golden_plan(graph, profile):
    torch._dynamo.reset()
    fn, inputs = graphs()[graph]
    check_golden(f"{graph}.{profile}", golden_text(fn, inputs, profile))


def _plan(graph: str, profile: str) -> str:
    torch._dynamo.reset()
    fn, inputs = graphs()[graph]
    with torch.no_grad():
        return torch_hetero.explain(fn, *inputs, device=profile).schedule


def test_long_softmax_is_one_pass_on_mtia_v2_and_looped_on_small_sram():
    assert "one-pass" in _plan("softmax_long", "mtia-v2")
    for profile in ("h100", "mi300x"):
        plan = _plan("softmax_long", profile)
        assert "looped" in plan and "one-pass" not in plan


def test_bf16_matmul_tiles_differ_across_devices():
    tiles = {}
    for profile in ("h100", "a100", "mi300x", "mtia-v2"):
        plan = _plan("linear_bias_gelu", profile)
        tiles[profile] = next(line.split(": ", 1)[1] for line in plan.splitlines() if "BM=" in line)
    assert len(set(tiles.values())) == 4, tiles


def test_one_profile_field_changes_the_plan(tmp_path):
    """A user profile identical to mtia-v2 but with 128 KiB of local SRAM loops the long row."""
    shipped = os.path.join(os.path.dirname(torch_hetero.__file__), "device_models", "profiles", "mtia-v2.toml")
    text = open(shipped).read()
    assert "local_sram_kib = 384" in text
    mine = tmp_path / "mtia-small.toml"
    mine.write_text(text.replace('name = "mtia-v2"', 'name = "mtia-small"').replace("local_sram_kib = 384",
                                                                                   "local_sram_kib = 128"))
    assert "one-pass" in _plan("softmax_long", "mtia-v2")
    assert "looped" in _plan("softmax_long", str(mine))
