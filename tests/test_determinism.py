"""Generated code is deterministic: the same graph on the same profile gives byte-identical
code, compiled twice in one process (no state leaks from one compile into the next) and in two
processes with different hash seeds (no order taken from a set or a dict of objects).  The
goldens (test_schedule_goldens.py) pin the code itself."""
import pytest
import torch

from test_fallback import explain, mixed, pointwise_chain, x3
from test_runtime import run_python


@pytest.mark.parametrize("fn,args", [
    pytest.param(pointwise_chain, lambda: (x3(),), id="pointwise"),
    pytest.param(mixed, lambda: (x3(), torch.randn(7, 4)), id="mixed"),
])
def test_codegen_is_deterministic_within_a_process(fn, args):
    inputs = args()
    assert explain(fn, *inputs).code == explain(fn, *inputs).code


def test_codegen_is_deterministic_across_processes(tmp_path):
    code = """
        import hashlib, torch, torch_hetero
        import torch.nn.functional as F
        def fn(x):
            return F.gelu(F.layer_norm(x, (8,)))
        report = torch_hetero.explain(fn, torch.randn(4, 8))
        assert any(name.endswith(".cpp") for name in report.code), report.code.keys()
        print(hashlib.sha256(repr(sorted(report.code.items())).encode()).hexdigest())
    """
    digests = [run_python(code, tmp_path / str(seed), PYTHONHASHSEED=str(seed)) for seed in (1, 2)]
    assert digests[0] == digests[1]
