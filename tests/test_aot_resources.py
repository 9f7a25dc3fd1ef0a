"""Every generated kernel of the zoo's GPT-2 and MLP, built ahead of time for the real targets
of the GPU profiles (cuda:80, cuda:90, hip:gfx942) in fp32 and bf16: no register spills, no
register file or shared memory over the limit.  The figures are read from the built binaries
(cuobjdump on the cubin, the amdgcn metadata), so a tile too large for a device fails here
without its GPU.  Inference graphs, the zoo models at short sequences (the kernels are the
same code at any length: sizes are arguments, tiles come from the device model)."""
import pytest
import torch

from torch_hetero.runtime import triton_run
from torch_hetero.tools import model_zoo
from torch_hetero.tools.audit import audit

DEVICES = ["a100", "h100", "mi300x"]


def _model(name):
    zoo = model_zoo.build(name)
    return zoo.model, tuple(t[:, :32] if name == "gpt2" else t[:64] for t in zoo.inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", ["mlp", "gpt2"])
def test_generated_kernels_fit_the_real_targets(name, dtype):
    model, inputs = _model(name)
    result = audit(model, *inputs, devices=DEVICES, dtype=dtype, progress=False)
    for d in result.devices:
        assert d.error is None, d.error
        assert set(d.aot.resources) == {k.name for k in d.report.kernels}, d.aot.errors
        problems = {k: d.aot.problems(k) for k in d.aot.resources if d.aot.problems(k)}
        assert d.aot.ok, (d.device, problems, d.aot.errors)
        assert all(0 < r.registers <= r.register_limit for r in d.aot.resources.values())


def test_resources_are_read_from_the_binary_and_judged_against_the_limits():
    """A hand-written kernel keeping three tiles live: at 16x16 it fits, at 64x128 cuda:90 runs
    out of its 255 registers and spills (ptxas -v says 40 B of spill stores).  The AMD spill path
    (gfx942 at 128x256: 512 VGPRs, 836 B scratch) takes ~14 s to build, so only its small build
    is here."""
    import triton
    from triton import language as tl

    @triton.jit
    def live_tiles(x_ptr, ROWS: tl.constexpr, COLS: tl.constexpr):
        offsets = tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :]
        x = tl.load(x_ptr + offsets)
        y = tl.load(x_ptr + ROWS * COLS + offsets)
        z = tl.load(x_ptr + 2 * ROWS * COLS + offsets)
        tl.store(x_ptr + offsets, x / tl.sum(y, axis=1)[:, None] + y / tl.max(z, axis=0)[None, :]
                 + z / tl.sum(x, axis=0)[None, :])

    def build(target, rows, cols):
        compiled = triton_run.aot_compile(live_tiles, {"x_ptr": "*fp32"}, {"ROWS": rows, "COLS": cols}, target)
        return triton_run.kernel_resources(compiled, target)

    for target, limit in (("cuda:90", 255), ("hip:gfx942", 512)):
        small = build(target, 16, 16)
        assert small.register_limit == limit and 0 < small.registers < 64 and small.spill_bytes == 0
        assert small.shared_bytes > 0 and not small.problems(small.shared_bytes)
        assert small.problems(small.shared_bytes - 1) == [f"shared memory {small.shared_bytes} B > "
                                                          f"{small.shared_bytes - 1} B"]
    large = build("cuda:90", 64, 128)
    assert large.registers == 255 and large.spill_bytes > 0
    assert large.problems(1 << 20) == [f"spills {large.spill_bytes} B per thread"]
