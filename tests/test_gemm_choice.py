"""Library GEMM or generated template, chosen by the cost model (planning/gemm_choice.py) on
the profiles that declare BLAS: the schedule says which and why, the profile's
``libraries.gemm_efficiency`` moves the choice, an epilogue can tip it, and a template chosen
over the library computes what eager does (under the interpreter)."""
import re

import pytest
import torch

import torch_hetero
from torch_hetero.device_models import get_profile
from torch_hetero.errors import ProfileError
from utils import check, profile_variant


def _profile_file(tmp_path, efficiency) -> str:
    """h100 with another figure for cuBLAS's efficiency (None: the key left out)."""
    return profile_variant(tmp_path, "h100", f"h100-{efficiency}",
                           ("gemm_efficiency = 0.75\n", "" if efficiency is None else f"gemm_efficiency = {efficiency}\n"))


def _schedule(fn, *inputs, device) -> str:
    torch._dynamo.reset()
    with torch.no_grad():
        return torch_hetero.explain(fn, *inputs, device=device).schedule


def _estimates(line: str) -> list:
    return [float(x) for x in re.findall(r"([0-9.]+) us", line)]


def _bf16(*shape):
    return torch.randn(*shape).to(torch.bfloat16)


def test_the_choice_and_its_reason_are_in_the_schedule():
    """h100 (cuBLAS at 0.75 of peak) keeps a 1024³ bf16 GEMM in the library; mi300x (hipBLASLt
    at 0.5) generates it: each line quotes the two estimates it compared."""
    a, b = _bf16(1024, 1024), _bf16(1024, 1024)
    [h100] = [line for line in _schedule(torch.mm, a, b, device="h100").splitlines() if "aten.mm" in line]
    assert h100.startswith("extern aten.mm.default") and "library call: cuBLAS, declared by the profile; est." in h100
    library, template = _estimates(h100)
    assert library <= template
    big = _bf16(4096, 4096)
    schedule = _schedule(torch.mm, big, big, device="mi300x")
    assert "kernel0: aten.mm.default -> buf0" in schedule and "extern" not in schedule
    [line] = [line for line in schedule.splitlines() if "generated in the device model's tile: est." in line]
    template, library = _estimates(line)
    assert template < library and "rocBLAS, hipBLASLt" in line


def test_the_library_efficiency_in_the_profile_moves_the_choice(tmp_path):
    a, b = _bf16(256, 512), _bf16(512, 384)
    assert "extern aten.mm.default" in _schedule(torch.mm, a, b, device=_profile_file(tmp_path, 1.0))
    slow = _schedule(torch.mm, a, b, device=_profile_file(tmp_path, 0.05))
    assert "extern" not in slow and "generated in the device model's tile: est." in slow


def test_an_epilogue_can_tip_the_choice_to_the_template():
    """Alone the GEMM stays cuBLAS's; with a GELU after it, the library's side pays the GELU's
    own kernel (a launch, the output's round trip), so the template with the epilogue wins."""
    a, b = _bf16(256, 512), _bf16(512, 384)
    assert "extern aten.mm.default" in _schedule(torch.mm, a, b, device="h100")
    schedule = _schedule(lambda a, b: torch.nn.functional.gelu(a @ b), a, b, device="h100")
    assert "extern" not in schedule and "epilogue of aten.mm.default" in schedule
    [line] = [line for line in schedule.splitlines() if "fused into the aten.mm.default output tile" in line]
    template, library, epilogue = _estimates(line)
    assert "+ its epilogue kernel" in line and library <= template < library + epilogue


def test_a_template_chosen_over_the_library_matches_eager(tmp_path):
    """Under the interpreter, with the library priced out (forward and backward)."""
    options = {"device": _profile_file(tmp_path, 0.01), "executor": "interpret"}
    torch.manual_seed(0)
    check(torch.mm, torch.randn(37, 70), torch.randn(70, 29), grad=True, atol=1e-4, rtol=1e-4,
          options=options, native=True)
    check(torch.mm, _bf16(33, 64), _bf16(64, 40), atol=2e-2, rtol=2e-2, options=options, native=True)


def test_a_blas_profile_must_state_its_library_efficiency(tmp_path):
    with pytest.raises(ProfileError, match="missing libraries.gemm_efficiency"):
        get_profile(_profile_file(tmp_path, None))
    with pytest.raises(ProfileError, match=r"libraries.gemm_efficiency must be a number in \(0, 1\]"):
        get_profile(_profile_file(tmp_path, 1.5))
