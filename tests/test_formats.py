"""The audit by number format: a copy of the model converted to fp32, bf16, int8 weight-only
(``int8wo``) or dynamic fp8 (``fp8``) in plain torch (``tools/formats.py``), compiled for each
device with its latency, memory need, portability and dtype debt, and the accuracy of its
outputs against the fp32 model's in eager."""
import json

import pytest
import torch

import torch_hetero
from torch_hetero.__main__ import main
from torch_hetero.tools import formats
from torch_hetero.tools.audit import audit, audit_formats


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 32)).eval(), \
        torch.randn(16, 64)


def test_quantized_formats_convert_a_copy_of_every_linear_layer():
    model, x = mlp()
    for fmt, weight_dtype in (("int8wo", torch.int8), ("fp8", torch.float8_e4m3fn)):
        quantized, (qx,) = formats.convert(model, (x,), fmt)
        assert [m.weight.dtype for m in quantized if hasattr(m, "weight")] == [weight_dtype] * 2
        assert qx.dtype == torch.bfloat16 and model[0].weight.dtype == torch.float32   # the caller's model is untouched
        with torch.no_grad():
            error = formats.accuracy(quantized(qx), model(x))
        assert 0 < error.mean_rel < (0.02 if fmt == "int8wo" else 0.1), (fmt, error)


def test_accuracy_is_relative_to_the_references_magnitude_and_checks_structure():
    reference = (torch.tensor([1.0, -2.0, 4.0]), torch.tensor([0.0]))
    exact = formats.accuracy(reference, reference)
    assert exact.max_rel == exact.mean_rel == 0 and formats.accuracy(torch.zeros(0), torch.zeros(0)) is None
    error = formats.accuracy((torch.tensor([1.0, -2.0, 5.0]), torch.tensor([0.0])), reference)
    assert error.max_rel == pytest.approx(1 / 4) and error.mean_rel == pytest.approx((1 / 4) / (7 / 4))
    with pytest.raises(ValueError, match="differ in structure"):
        formats.accuracy((torch.zeros(3),), reference)
    with pytest.raises(ValueError, match="choose from fp32, bf16, fp16, int8wo, fp8"):
        formats.format_name("int3")
    assert formats.format_name(torch.bfloat16) == formats.format_name("bfloat16") == "bf16"


def test_the_format_audit_compares_latency_memory_debt_and_accuracy(tmp_path):
    import matplotlib.image
    model, x = mlp()
    result = audit_formats(model, x, devices=["cpu", "h100", "a100"], formats=["fp32", "int8wo", "fp8"],
                           ahead_of_time=False, progress=False)
    by = {(a.format, d.device): (a, d) for a in result.audits for d in a.devices}
    assert all(d.error is None and not d.debt for _, d in by.values())   # no fallback anywhere
    assert by["fp32", "cpu"][1].accuracy.max_rel < 1e-5
    assert 1e-4 < by["int8wo", "h100"][1].accuracy.mean_rel < 0.02
    assert by["int8wo", "h100"][0].weight_bytes < by["fp32", "h100"][0].weight_bytes / 3
    # fp8 matmuls run in a wider format where the matrix units lack e4m3fn: a100 (bf16), the host (fp32)
    debt = {device: {(x.wanted, x.runs_as) for x in d.report.dtype_debt} for (f, device), (_, d) in by.items()
            if f == "fp8"}
    assert debt == {"h100": set(), "a100": {("float8_e4m3fn", "bfloat16")}, "cpu": {("float8_e4m3fn", "float32")}}
    text = str(result)
    assert "int8wo  h100" in text and "float8_e4m3fn as bfloat16" in text
    paths = result.write(str(tmp_path / "formats"))
    record = json.loads(open(paths["json"]).read())
    assert [a["format"] for a in record["formats"]] == ["fp32", "int8wo", "fp8"]
    assert record["formats"][1]["devices"][1]["accuracy"]["mean_rel"] == by["int8wo", "h100"][1].accuracy.mean_rel
    rows = [line for line in open(paths["markdown"]).read().splitlines() if line.startswith("| fp8 |")]
    assert len(rows) == 3 and all(line.count("|") == 9 for line in rows)
    assert (tmp_path / "formats" / "int8wo" / "audit.md").exists()
    assert matplotlib.image.imread(paths["chart"]).shape[1] > 300


FACTORY = '''
import torch

def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU()).eval(), torch.randn(8, 32)
'''


def test_the_command_line_takes_a_list_of_formats(tmp_path, capsys):
    (tmp_path / "models.py").write_text(FACTORY)
    out = tmp_path / "out"
    assert main(["audit", f"{tmp_path / 'models.py'}:make", "--devices", "cpu", "--dtype", "fp32,int8wo",
                 "--no-aot", "--out", str(out)]) == 0
    assert "format audit: Sequential" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"formats.md", "formats.json", "formats.png", "fp32", "int8wo"}
    assert main(["audit", f"{tmp_path / 'models.py'}:make", "--dtype", "fp32,int3"]) == 2
    assert "--dtype: unknown format 'int3'" in capsys.readouterr().err
    assert main(["audit", f"{tmp_path / 'models.py'}:make", "--devices", "cpu", "--dtype", "bfloat16", "--no-aot",
                 "--out", str(tmp_path / "one")]) == 0
    assert "portability audit: Sequential in bf16" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["int8wo", "fp8"])
def test_a_quantized_transformers_llm_compiles_with_no_fallback(fmt):
    """GPT-2 (its Conv1D layers and tied LM head) quantized: no op falls back on the host or
    h100, its output is as close to the fp32 model's as the quantized model's in eager, and on
    a100 (no fp8 units) the fp8 matmuls are dtype debt.  (Compiled and eager fp8 outputs are not
    compared directly: a bf16 intermediate rounded one ulp apart — a reduction order — moves an
    activation across an fp8 rounding boundary, and such flips compound over the layers.)"""
    pytest.importorskip("transformers")
    from torch_hetero.tools import model_zoo
    zoo = model_zoo.build("gpt2")
    model, inputs = formats.convert(zoo.model, zoo.inputs, fmt)
    matmuls = 2 * 4 + 1   # per layer: qkv, attention out, MLP up and down; the LM head
    with torch.no_grad():
        reference, eager = zoo.model(*zoo.inputs), model(*inputs)
        for device in ("cpu", "h100"):
            torch._dynamo.reset()
            with torch_hetero.backend.collect_compiled_graphs() as graphs:
                compiled = torch.compile(model, backend="hetero", options={"device": device, "strict": True})(*inputs)
            assert all(not g.fallbacks for _, g, _ in graphs)
            debt = [d for _, g, _ in graphs for d in g.plan.dtype_debt]
            assert len(debt) == (matmuls if fmt == "fp8" and device == "cpu" else 0)
            if fmt == "int8wo" and device == "cpu":   # every layer, its rows split in [batch, sequence] too
                calls = [e.call.name for _, g, _ in graphs for e in g.plan.externs if "mm" in e.call.name]
                assert calls == ["aten._weight_int8pack_mm.default"] * matmuls, calls
            ours, theirs = formats.accuracy(compiled, reference), formats.accuracy(eager, reference)
            assert ours.mean_rel < 1.2 * theirs.mean_rel and ours.max_rel < 1.5 * theirs.max_rel, (device, ours, theirs)
            if fmt == "int8wo":
                assert formats.accuracy(compiled, eager).mean_rel < 2e-2
        a100 = torch_hetero.explain(model, *inputs, device="a100")
        assert len(a100.dtype_debt) == (matmuls if fmt == "fp8" else 0) and not a100.fallbacks
    torch._dynamo.reset()


def test_fp8_is_audited_in_each_devices_own_encoding():
    """MI300X's fp8 units take e4m3fnuz: its fp8 model is converted to that, with no dtype
    debt; h100's to e4m3fn; a100 (no fp8 units) gets OCP's e4m3fn, as debt."""
    model, x = mlp()
    result = audit(model, x, devices=["mi300x", "h100", "a100"], dtype="fp8", ahead_of_time=False, progress=False)
    debt = {d.device: {(x.wanted, x.runs_as) for x in d.report.dtype_debt} for d in result.devices}
    assert debt == {"mi300x": set(), "h100": set(), "a100": {("float8_e4m3fn", "bfloat16")}}
    assert all(d.accuracy.mean_rel < 0.1 for d in result.devices)
