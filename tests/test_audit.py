"""The portability audit: every profile on a small model, debt by op and layer, the report
files, per-device errors that do not stop the others, and the command line."""
import json
import os
import random
import re

import pytest
import torch
import torch.nn.functional as F

import torch_hetero
from torch_hetero import compiler
from torch_hetero.__main__ import main
from torch_hetero.device_models import PROFILES_DIR, get_profile, list_profiles
from torch_hetero.errors import HeteroCompileError
from torch_hetero.runtime import triton_run
from torch_hetero.tools.audit import Audit, audit, load_factory
from torch_hetero.tools.audit_report import to_json


class Block(torch.nn.Module):
    def __init__(self, dim=32):
        super().__init__()
        self.norm, self.fc = torch.nn.LayerNorm(dim), torch.nn.Linear(dim, dim)

    def forward(self, x):
        return x + F.gelu(self.fc(self.norm(x))).softmax(-1)


class RunningMax(torch.nn.Module):
    """cummax has a host lowering but none on Triton targets; the determinant has none at all."""

    def forward(self, x):
        return torch.cummax(x, -1).values + torch.linalg.det(x[..., :4, :4]).unsqueeze(-1).unsqueeze(-1)


class WithDebt(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.block, self.tail = Block(), torch.nn.ModuleList([RunningMax(), RunningMax()])

    def forward(self, x):
        x = self.block(x)
        for layer in self.tail:
            x = layer(x)
        return x


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(Block(), Block()).eval(), (torch.randn(4, 16, 32),)


def test_every_profile_compiles_the_model_and_is_reported():
    model, inputs = small_model()
    result = torch_hetero.audit(model, *inputs, progress=False)
    assert [d.device for d in result.devices] == list_profiles()
    assert result.batch == 4 and result.dtype == "fp32" and result.parameters == 2 * (2 * 32 + 32 * 32 + 32)
    for d in result.devices:
        profile = get_profile(d.device)
        assert d.error is None, d.error
        assert d.report.kernels and not d.debt
        assert all(k.estimate_us > 0 and k.bound for k in d.report.kernels)
        assert d.latency_us == pytest.approx(sum(s.estimate_us for s in d.report.kernels + d.report.externs))
        assert d.energy_uj == pytest.approx(d.latency_us * profile.tdp_w)
        assert result.samples_per_joule(d) == pytest.approx(4 / (d.energy_uj * 1e-6))
        # activations: at least the output, at most every intermediate buffer at once
        assert 4 * 16 * 32 * 4 <= d.peak_activation_bytes <= 40 * 4 * 16 * 32 * 4
        assert result.fits(d) and result.need_bytes(d) < profile.dram_bytes
        if profile.triton_target:
            assert d.aot.target == profile.triton_target and d.aot.ok and not d.aot.errors
            assert set(d.aot.resources) == {k.name for k in d.report.kernels}
        else:
            assert d.aot is None
    text = str(result)
    assert all(name in text for name in list_profiles()) and "no public Triton target" in text


def test_ops_without_a_native_kernel_are_debt_with_their_layers():
    torch.manual_seed(0)
    result = audit(WithDebt().eval(), torch.randn(2, 8, 32), devices=["cpu", "h100"], progress=False)
    cpu, h100 = result.devices
    assert {d.op: d.calls for d in cpu.debt} == {"aten._linalg_det": 2}
    assert {d.op: d.calls for d in h100.debt} == {"aten._linalg_det": 2, "aten.cummax": 2}
    for debt in cpu.debt + h100.debt:
        assert debt.layers == ["tail.0", "tail.1"]
    assert "debt on h100: aten.cummax × 2 in tail.0, tail.1" in str(result)


def test_activation_peak_follows_the_memory_plan():
    """sin → mm → cos → mm → tan on 64×64 floats: the plan frees each buffer after its last
    reader, so at most two 16 KiB buffers are live at once."""
    w = torch.randn(64, 64)

    def chain(x):
        return ((x.sin() @ w).cos() @ w).tan()
    result = audit(chain, torch.randn(64, 64), devices=["cpu"], progress=False)
    assert result.devices[0].peak_activation_bytes == 2 * 64 * 64 * 4


def test_report_files_exist_and_parse(tmp_path):
    import matplotlib.image
    torch.manual_seed(0)
    result = audit(WithDebt().eval(), torch.randn(2, 8, 32), devices=["cpu", "mi300x", "mtia-v2"], progress=False)
    paths = result.write(str(tmp_path / "report"))
    record = json.loads(open(paths["json"]).read())
    assert [d["device"] for d in record["devices"]] == ["cpu", "mi300x", "mtia-v2"]
    mi300x = record["devices"][1]
    assert mi300x["ahead_of_time"]["ok"] and mi300x["memory"]["fits"]
    assert {"op": "aten.cummax", "calls": 2, "layers": ["tail.0", "tail.1"]} in mi300x["debt"]
    assert sum(k["estimate_us"] for k in mi300x["kernels"]) + sum(c["estimate_us"] for c in mi300x["aten_calls"]) \
        == pytest.approx(mi300x["latency_us"])
    markdown = open(paths["markdown"]).read()
    summary = [line for line in markdown.splitlines() if line.startswith("| cpu") or line.startswith("| mi300x")
               or line.startswith("| mtia-v2")]
    assert len(summary) == 3 and all(line.count("|") == 13 for line in summary)
    assert "![roofline" in markdown and "| aten.cummax | 2 | tail.0, tail.1 |" in markdown
    image = matplotlib.image.imread(paths["roofline"])
    assert image.shape[0] > 100 and image.shape[1] > 300


def test_a_device_that_fails_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    broken = tmp_path / "broken.toml"
    broken.write_text("name = ")
    real_plan = compiler.build_plan

    def plan_failing_on_mtia(graph, profile, *args):
        if profile.name == "mtia-v2":
            raise RuntimeError("simulated code generation failure")
        return real_plan(graph, profile, *args)
    monkeypatch.setattr(compiler, "build_plan", plan_failing_on_mtia)
    model, inputs = small_model()
    result = audit(model, *inputs, devices=["mtia-v2", str(broken), "cpu", "rivos-sim"], progress=False)
    mtia, bad, cpu, rivos = result.devices
    assert mtia.error.startswith("the inference graph ran eagerly: RuntimeError: simulated code generation "
                                 "failure\n  its ATen ops: ") and mtia.report is None
    assert "aten.var_mean x2" in mtia.error and "aten.gelu x2" in mtia.error, mtia.error
    assert "broken.toml" in bad.error and "TOML" in bad.error
    assert cpu.error is None and rivos.error is None and cpu.report.kernels and rivos.report.kernels
    text = str(result)
    assert "error on mtia-v2" in text and "error: " in text


def test_a_kernel_that_does_not_build_ahead_of_time_is_reported(monkeypatch):
    real = triton_run.aot_compile

    def failing_first(kernel, signature, constexprs, target, launch_options=()):
        if kernel.__name__ == "kernel0":
            raise HeteroCompileError(f"Triton could not compile kernel0 for {target}: simulated")
        return real(kernel, signature, constexprs, target, launch_options)
    monkeypatch.setattr(triton_run, "aot_compile", failing_first)
    model, inputs = small_model()
    [h100] = audit(model, *inputs, devices=["h100"], progress=False).devices
    assert h100.error is None and not h100.aot.ok
    assert list(h100.aot.errors) == ["inference.kernel0"] and "simulated" in h100.aot.errors["inference.kernel0"]
    assert len(h100.aot.resources) == len(h100.report.kernels) - 1


FACTORY = '''
import torch

def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU()).eval(), torch.randn(8, 16)

def not_a_pair():
    return 3
'''


def test_the_command_line_audits_a_factory_and_writes_the_report(tmp_path, capsys):
    (tmp_path / "models.py").write_text(FACTORY)
    out = tmp_path / "out"
    assert main(["audit", f"{tmp_path / 'models.py'}:make", "--devices", "cpu,h100", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "portability audit: Sequential" in captured.out and "h100" in captured.out
    assert "audit [2/2] h100: compiling 1 Triton kernel(s) ahead of time for cuda:90" in captured.err
    assert {p.name for p in out.iterdir()} == {"audit.md", "audit.json", "roofline.png"}
    assert main(["audit", f"{tmp_path / 'models.py'}:not_a_pair"]) == 2
    assert "returns (model, example_inputs)" in capsys.readouterr().err
    assert main(["audit", "no_such_module_here:make"]) == 2
    assert main(["audit", "models.py"]) == 2


def test_factories_may_return_a_zoo_model_and_a_dtype_converts_a_copy():
    model, inputs = load_factory("torch_hetero.tools.examples:tiny_gpt")
    assert isinstance(model, torch.nn.Module) and inputs[0].shape == (2, 32)
    block, (x,) = small_model()
    result = audit(block, x, devices=["h100"], dtype=torch.bfloat16, ahead_of_time=False, progress=False)
    assert result.dtype == "bf16" and result.devices[0].aot is None
    assert next(block.parameters()).dtype == torch.float32  # the caller's model is untouched
    assert result.weight_bytes == 2 * sum(p.numel() for p in block.parameters())


def test_without_matplotlib_the_report_is_written_without_the_chart(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    result = audit(lambda x: x.relu(), torch.randn(8), devices=["cpu"], progress=False)
    with pytest.warns(UserWarning, match="matplotlib is not installed"):
        paths = result.write(str(tmp_path))
    assert set(paths) == {"markdown", "json"} and "![roofline" not in open(paths["markdown"]).read()


def relu(x):
    return x.relu() + 1


def test_an_unreadable_profile_is_its_devices_error_and_the_others_run(tmp_path):
    """300 random bytes used to abort the whole audit with a bare UnicodeDecodeError."""
    garbage = tmp_path / "garbage.toml"
    garbage.write_bytes(bytes([0xb2]) + random.Random(0).randbytes(299))
    (tmp_path / "folder.toml").mkdir()
    result = audit(relu, torch.randn(8), devices=["cpu", str(garbage), str(tmp_path / "folder.toml"), "h100"],
                   ahead_of_time=False, progress=False)
    cpu, bad, folder, h100 = result.devices
    assert cpu.error is None and h100.error is None
    assert bad.error == f"{garbage}: not a text file: byte 0xb2 at offset 0 is not UTF-8; a profile is a TOML file " \
                        "(UTF-8 text)"
    assert folder.error == f"{tmp_path / 'folder.toml'}: cannot read the profile file (Is a directory)"
    record = json.loads(open(result.write(str(tmp_path / "report"))["json"]).read())
    assert [d["error"] for d in record["devices"]] == [None, bad.error, folder.error, None]


def test_devices_may_be_one_name_but_not_an_empty_list():
    [h100] = audit(relu, torch.randn(8), devices="h100", ahead_of_time=False, progress=False).devices
    assert h100.device == "h100" and h100.error is None
    with pytest.raises(ValueError, match="devices is empty: give profile names or .toml files"):
        audit(relu, torch.randn(8), devices=[], progress=False)
    with pytest.raises(TypeError, match="devices must be a profile name or .toml file, or a list of them, got 3"):
        audit(relu, torch.randn(8), devices=3, progress=False)
    assert main(["audit", "torch_hetero.tools.examples:tiny_gpt", "--devices", ""]) == 2


def test_user_profiles_sharing_a_name_are_told_apart_by_their_files(tmp_path):
    files = []
    for stem in ("a", "b", "c"):
        files.append(tmp_path / f"{stem}.toml")
        files[-1].write_text(open(f"{PROFILES_DIR}/h100.toml").read().replace('name = "h100"', 'name = "mydev"'))
    result = audit(relu, torch.randn(8), devices=[*map(str, files), "h100"], ahead_of_time=False, progress=False)
    assert [d.device for d in result.devices] == ["mydev"] * 3 + ["h100"]
    assert [d.label for d in result.devices] == [f"mydev ({f})" for f in files] + ["h100"]
    rows = [line.split()[:2] for line in str(result).splitlines()[2:]]
    assert rows == [["mydev", f"({f})*"] for f in files] + [["h100*", "triton"]]
    paths = result.write(str(tmp_path / "report"))  # the chart reads each profile again: from its file
    assert [d["file"] for d in json.loads(open(paths["json"]).read())["devices"]] == [*map(str, files), None]
    assert all(f"## mydev ({f}) — " in open(paths["markdown"]).read() for f in files)


FACTORY_THAT_MUST_NOT_RUN = '''
def make():
    raise AssertionError("the factory ran: the output directory was checked too late")
'''


def test_an_out_that_cannot_hold_the_report_exits_2_before_any_work(tmp_path, capsys):
    (tmp_path / "models.py").write_text(FACTORY_THAT_MUST_NOT_RUN)
    (tmp_path / "a-file").write_text("")
    for out, why in [(tmp_path / "a-file", "it is a file, not a directory"),
                     (tmp_path / "a-file" / "report", f"{tmp_path / 'a-file'} is a file, not a directory")]:
        assert main(["audit", f"{tmp_path / 'models.py'}:make", "--out", str(out)]) == 2
        assert capsys.readouterr().err == (f"python -m torch_hetero audit: cannot write the report to {out}: {why}; "
                                           "choose another --out\n")
    report = Audit(model="m", dtype="fp32", parameters=0, weight_bytes=0, input_bytes=0, inputs=[], batch=1, devices=[])
    with pytest.raises(NotADirectoryError, match=re.escape(f"cannot write the report to {tmp_path / 'a-file' / 'r'}")):
        report.write(str(tmp_path / "a-file" / "r"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a directory whatever its mode")
def test_an_out_without_write_permission_exits_2(tmp_path, capsys):
    (tmp_path / "models.py").write_text(FACTORY_THAT_MUST_NOT_RUN)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    assert main(["audit", f"{tmp_path / 'models.py'}:make", "--out", str(locked / "report")]) == 2
    assert f"{locked} is not writable; choose another --out" in capsys.readouterr().err


def test_embedding_tables_fit_on_chip_or_off():
    """A recommender's tables (77 MiB) fit MTIA v2's 256 MiB of on-chip memory, not an H100's 50 MiB L2."""
    bag = torch.nn.EmbeddingBag(300_000, 64, mode="sum")
    indices, offsets = torch.randint(0, 300_000, (40,)), torch.arange(0, 40, 5)
    result = torch_hetero.audit(bag, indices, offsets, devices=["h100", "mtia-v2"], ahead_of_time=False, progress=False)
    assert result.embedding_bytes == 300_000 * 64 * 4
    assert [result.tables_fit(d) for d in result.devices] == ["off chip", "on chip"]
    assert "tables 73.24 MiB: on chip" in str(result)
    assert to_json(result)["devices"][1]["memory"]["tables_fit"] == "on chip"
