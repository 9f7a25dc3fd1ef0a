"""The ``torch_hetero`` log through ``TORCH_LOGS``, as for Inductor: INFO names each compiled
graph (profile, kernels, extern calls, fallbacks, compile time), DEBUG adds the plan (tiles,
fusion decisions) and each fallback, the ``output_code`` artifact prints the generated code.
Each case runs in a fresh interpreter: torch reads TORCH_LOGS when it is imported."""
import os
import re
import subprocess
import sys
import textwrap

import pytest

CODE = """
    import torch
    def fn(x, w):
        return (x @ w).relu().softmax(-1) + torch.histc(x, 4).sum()
    torch.compile(fn, backend="hetero")(torch.randn(8, 16), torch.randn(16, 4))
"""
INFO = re.compile(r"compiled the inference graph for profile cpu: (\d+) kernel\(s\), 1 extern call\(s\), "
                  r"fallbacks: aten\.histc x1; \d+\.\d{3} s")


def logged(tmp_path, setting: str) -> str:
    env = {**os.environ, "TORCH_LOGS": setting, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "torch"),
           "TORCH_HETERO_CACHE_DIR": str(tmp_path / "hetero")}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(CODE)], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


@pytest.mark.parametrize("setting", ["torch_hetero", "+torch_hetero", "output_code"])
def test_torch_logs(tmp_path, setting):
    log = logged(tmp_path, setting)
    info, debug, code = "torch_hetero" in setting, setting.startswith("+"), "output_code" in setting
    found = INFO.findall(log)
    assert len(found) == (1 if info else 0) and (not info or int(found[0]) >= 1), log[-4000:]
    assert ("the inference graph's plan for profile cpu" in log) is debug, log[-4000:]
    assert (" fused: reads " in log and "XBLOCK=" in log) is debug  # fusion decisions and tiles
    assert ("fallback: aten.histc has no native lowering on the 'cpu' profile: histc over the data's own range" in log) is debug
    assert ("[__output_code] inference.cpp for profile cpu:" in log) is code, log[-4000:]
    assert ('extern "C" void kernel0(' in log) is code
    assert ("torch.ops.aten.histc.default(" in log) is code  # the wrapper
    assert log.count("compiled the inference graph") <= 1  # one handler: no line printed twice
