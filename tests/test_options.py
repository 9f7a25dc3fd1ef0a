"""Options: how torch.compile's ``options`` and the ``TORCH_HETERO_*`` variables are parsed
(``options.resolve``): the device chosen by option > environment > auto, booleans read as
PyTorch's own flags, and an unknown option or a bad value rejected by name."""
import re

import pytest
import torch

import torch_hetero
from torch_hetero import options as options_mod
from torch_hetero.calibration import calibrate
from torch_hetero.device_models import get_profile
from torch_hetero.errors import HeteroCompileError
# fake_host (autouse here too): a fresh cache, an instant fake calibration counting its runs
from test_device_profiles import edit, fake_host  # noqa: F401
from utils import compile_hetero

BOOLEAN_VARIABLES = [("TORCH_HETERO_STRICT", "strict"), ("TORCH_HETERO_FUSION", "fusion"),
                     ("TORCH_HETERO_AOT_CACHE", "aot_cache")]


def pointwise(x):
    return x.sin() * 2 + 1


@pytest.fixture
def gpu(monkeypatch):
    """Pretend a GPU named ``gpu(name)`` is visible (None: no GPU)."""
    def set_gpu(name):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: name is not None)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: name)
    set_gpu(None)
    return set_gpu


# --- the device ------------------------------------------------------------------------------

def test_option_beats_environment_beats_auto(monkeypatch, gpu):
    gpu("NVIDIA H100 80GB HBM3")
    assert options_mod.resolve().device == "h100"
    monkeypatch.setenv("TORCH_HETERO_DEVICE", "mi300x")
    assert options_mod.resolve().device == "mi300x"
    assert options_mod.resolve({"device": "mtia-v2"}).device == "mtia-v2"
    assert options_mod.resolve({"device": "mtia-v2"}).profile is get_profile("mtia-v2")


@pytest.mark.parametrize("gpu_name,device", [
    (None, "cpu"), ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200"),
    ("NVIDIA A100-SXM4-80GB", "a100"), ("AMD Instinct MI300X", "mi300x"), ("NVIDIA GeForce RTX 4090", "cpu"),
])
def test_auto_matches_the_visible_gpu_by_name(gpu_name, device, gpu):
    gpu(gpu_name)
    assert options_mod.resolve().device == device


def test_resolving_the_host_does_not_calibrate(fake_host, gpu):
    opts = options_mod.resolve()
    assert opts.device == "cpu" and fake_host == []
    assert opts.profile.name == "cpu" and len(fake_host) == calibrate.RUNS


def test_profile_file_as_option(tmp_path, monkeypatch):
    path = tmp_path / "mine.toml"
    path.write_text(edit('name = "h100"', 'name = "mine"'))
    monkeypatch.setenv("TORCH_HETERO_DEVICE", str(path))
    opts = options_mod.resolve()
    assert opts.device == str(path) and opts.profile.name == "mine"


def test_profile_path_object_as_option(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(edit('name = "h100"', 'name = "mine"'))
    assert options_mod.resolve({"device": path}).device == str(path)


@pytest.mark.parametrize("device,message", [
    ("nope", "unknown device profile 'nope'; known profiles: cpu, a100, h100"),
    (3, "a device is a profile name or the path of a profile file, got 3"),
    ("broken.toml", "broken.toml: not valid TOML"),
])
def test_bad_device_option_raises_compile_error(device, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.toml").write_text("name = ")
    with pytest.raises(HeteroCompileError, match=re.escape(message)):
        options_mod.resolve({"device": device})


# --- booleans and unknown options ------------------------------------------------------------

@pytest.mark.parametrize("variable,field", BOOLEAN_VARIABLES)
@pytest.mark.parametrize("text,value", [("1", True), ("true", True), ("ON", True), ("Yes", True),
                                        ("0", False), ("False", False), ("off", False), ("NO", False)])
def test_boolean_variables_parse_as_torch_flags(variable, field, text, value, monkeypatch):
    """As PyTorch's own flags: TORCH_HETERO_STRICT=no used to turn strict mode on."""
    monkeypatch.setenv(variable, text)
    assert getattr(options_mod.resolve(), field) is value


@pytest.mark.parametrize("variable,field", BOOLEAN_VARIABLES)
@pytest.mark.parametrize("text", ["", "2", "maybe", "y"])
def test_boolean_variables_reject_other_values_by_name(variable, field, text, monkeypatch):
    monkeypatch.setenv(variable, text)
    with pytest.raises(torch_hetero.HeteroCompileError) as excinfo:
        options_mod.resolve()
    assert f"{variable}={text!r} is not a boolean" in str(excinfo.value)
    assert "1/true/on/yes or 0/false/off/no" in str(excinfo.value)


def test_boolean_options_take_bools_or_the_same_words(monkeypatch):
    monkeypatch.setenv("TORCH_HETERO_STRICT", "1")
    assert options_mod.resolve({"strict": False}).strict is False  # the option wins over the variable
    assert options_mod.resolve({"strict": "off"}).strict is False
    with pytest.raises(torch_hetero.HeteroCompileError, match="option 'fusion'=1 is not a boolean"):
        options_mod.resolve({"fusion": 1})


def test_an_unknown_option_fails_the_compile_by_name():
    torch._dynamo.reset()
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed) as excinfo:
        compile_hetero(pointwise, options={"bogus": 1})(torch.randn(3, 5))
    for text in ["HeteroCompileError", "unknown torch_hetero option", "bogus"]:
        assert text in str(excinfo.value)


def test_max_autotune_mode_is_accepted(monkeypatch):
    monkeypatch.setenv("TORCH_HETERO_STRICT", "1")  # mode and options can't be combined
    torch._dynamo.reset()
    x = torch.randn(3, 5)
    torch.testing.assert_close(torch.compile(pointwise, backend="hetero", mode="max-autotune")(x), pointwise(x))
