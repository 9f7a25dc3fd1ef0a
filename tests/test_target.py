"""Targets: each profile carries its capabilities (``device_models.target``), derived from its
language and refined by the file's ``[capabilities]`` table; lowerings and planners ask those,
never the language, so a profile that turns one off changes what runs natively."""

import os

import pytest
import torch

import torch_hetero
from torch_hetero.device_models import get_profile, host
from torch_hetero.device_models.target import DECLARABLE
from torch_hetero.errors import ProfileError
from torch_hetero.planning.cost_model import MemoryModel
from torch_hetero.planning.tiling import plan_matmul

PROFILES_DIR = os.path.join(os.path.dirname(torch_hetero.__file__), "device_models", "profiles")
H100_TEXT = open(os.path.join(PROFILES_DIR, "h100.toml")).read()
LIBRARIES_LINE = 'blas = ["cuBLAS"]'


def h100_with(tmp_path, capabilities: str, libraries: str = LIBRARIES_LINE):
    """The h100 file with more lines in its [capabilities] table (``libraries`` in place of its
    BLAS line), as a profile path."""
    path = tmp_path / "mine.toml"
    path.write_text(H100_TEXT.replace(LIBRARIES_LINE, f"{libraries}\n{capabilities}"))
    return str(path)


def explain(fn, *args, device):
    torch._dynamo.reset()
    return torch_hetero.explain(fn, *args, device=device)


def test_shipped_profiles_carry_their_languages_capabilities_and_libraries():
    cpu, h100, mi300x, mtia = (get_profile(name).target for name in ("cpu", "h100", "mi300x", "mtia-v1"))
    assert (cpu.language, cpu.host_threads, cpu.sorting, cpu.column_reductions, cpu.matmul_epilogue,
            cpu.special_functions) == ("cpp", True, True, True, False, "aten_math")
    assert (h100.language, h100.host_threads, h100.sorting, h100.scatter_multiply, h100.scatter_add_16bit,
            h100.matmul_epilogue, h100.special_functions) == ("triton", False, True, False, False, True, "libdevice")
    assert (h100.blas, h100.attention, h100.convolution) == (("cuBLAS",), ("flash attention", "cuDNN"), ("cuDNN",))
    assert (mi300x.blas, mi300x.attention, mi300x.convolution) == (("rocBLAS", "hipBLASLt"), ("CK",), ("MIOpen",))
    assert (mtia.blas, mtia.attention, mtia.convolution) == ((), (), ())
    assert get_profile("rivos-sim").target.attention == () and get_profile("rivos-sim").target.convolution == ()
    assert cpu.blas == (("MKL",) if torch.backends.mkl.is_available() else ())
    assert cpu.attention == ("ATen CPU flash attention",)
    assert (h100.attention_op, mi300x.attention_op, mtia.attention_op, cpu.attention_op) == (
        "aten._scaled_dot_product_flash_attention", "aten._scaled_dot_product_flash_attention",
        "", "aten._scaled_dot_product_flash_attention_for_cpu")
    assert h100.matrix_dtypes == ("bf16", "fp16", "fp8", "int8", "tf32")
    assert get_profile("h100").codegen == "triton" and get_profile("cpu").codegen == "cpp"


def test_a_file_may_turn_a_renderer_capability_off_and_set_device_ones(tmp_path):
    """Without a generated GEMM the planner has no matmul tile and fusion no epilogue; a
    cached local memory adds the private-cache level to the memory model."""
    path = h100_with(tmp_path, "matmul_epilogue = false\ncached_local_memory = true")
    profile = get_profile(path)
    assert not profile.target.matmul_epilogue and profile.target.cached_local_memory
    assert plan_matmul(1, 64, 64, 64, torch.float16, profile) is None
    assert len(MemoryModel(profile).levels) == 2 and len(MemoryModel(get_profile("h100")).levels) == 1
    a, b = torch.randn(32, 16), torch.randn(16, 24)
    fused = explain(lambda x, y: (x @ y).relu(), a, b, device="h100").schedule
    library = explain(lambda x, y: (x @ y).relu(), a, b, device=path).schedule
    assert "epilogue of aten.mm.default" in fused
    assert "epilogue of" not in library and "the target's GEMM is a library call" in library, library


@pytest.mark.parametrize("lines,message", [
    ("running_extremes = true",
     "capabilities.running_extremes cannot be true with codegen = 'triton': its renderer has no code for it"),
    ("sorting = 1", "capabilities.sorting must be true or false, got 1"),
    ("tensor_cores = [\"wgmma\"]", "capabilities.tensor_cores: unknown capability"),
    ("fast = true", f"capabilities.fast: unknown capability; capabilities are {', '.join(DECLARABLE)}"),
    ("language = \"cpp\"", "capabilities.language: unknown capability"),
], ids=["renderer-lacks-it", "not-a-flag", "unknown-list", "unknown", "language-is-codegen"])
def test_a_wrong_capability_is_a_profile_error_naming_it(tmp_path, lines, message):
    path = h100_with(tmp_path, lines)
    with pytest.raises(ProfileError) as excinfo:
        get_profile(path)
    assert str(excinfo.value).startswith(f"{path}: {message}")


def test_a_library_entry_is_a_list_of_names(tmp_path):
    path = h100_with(tmp_path, "", libraries='blas = "cuBLAS"')
    with pytest.raises(ProfileError) as excinfo:
        get_profile(path)
    assert str(excinfo.value) == f"{path}: capabilities.blas must be a list of library names, got 'cuBLAS'"


def test_an_attention_library_must_name_the_op_that_reaches_it(tmp_path):
    """A report names an attention extern by the op of the profile's first attention library."""
    path = h100_with(tmp_path, 'attention = ["my fused attention"]')
    path = str(path)
    with open(path) as f:
        text = f.read().replace('attention = ["flash attention", "cuDNN"]', "")
    with open(path, "w") as f:
        f.write(text)
    with pytest.raises(ProfileError, match=r"capabilities.attention names \['my fused attention'\]: known"):
        get_profile(path)


def test_capabilities_must_be_a_table(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("capabilities = 3\n" + H100_TEXT.split("[capabilities]")[0])
    with pytest.raises(ProfileError, match="capabilities must be a table of capability = value, got 3"):
        get_profile(str(path))


def test_lowerings_and_fusion_ask_the_capability_not_the_language(monkeypatch):
    """The host's language renders sorting and column reductions; a host declared without them
    sorts through ATen and plans the column reduction as any other."""
    x = torch.randn(64, 256)
    sort, column_sum = (lambda v: torch.sort(v, 1)), (lambda v: v.sum(0))
    assert not explain(sort, x, device="cpu").fallbacks
    assert "a column reduction runs alone" in explain(column_sum, x, device="cpu").schedule
    table = host.host_table()
    monkeypatch.setattr(host, "host_table", lambda: {**table, "capabilities": {"sorting": False,
                                                                                 "column_reductions": False}})
    host.host_profile.cache_clear()
    try:
        assert explain(sort, x, device="cpu").fallbacks == {"aten.sort": 1}
        assert "a column reduction runs alone" not in explain(column_sum, x, device="cpu").schedule
    finally:
        host.host_profile.cache_clear()
