"""The Triton path: generated Triton kernels run under Triton's CPU interpreter and match eager,
compile ahead of time for their profile's real GPU target, and (marked ``gpu``) run natively."""
import copy

import pytest
import torch
import torch.nn.functional as F

import torch_hetero
from test_correctness import CASES, GRAD_CASES, NN, REDUCTION_CASES, make_inputs
from test_schedule_goldens import PROFILES, graphs
from torch_hetero.device_models import get_profile
from torch_hetero.runtime import triton_run
from torch_hetero.tools.examples import Block, TinyGPT
from utils import check, compiled_kernels, planned_kernels

INTERPRET = {"device": "h100", "executor": "interpret"}
MTIA = {"device": "mtia-v2", "executor": "interpret"}
HAS_GPU = torch.cuda.is_available()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_under_the_interpreter(case):
    check(case.fn, *make_inputs(case), atol=case.tol, rtol=case.tol, options=INTERPRET)


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.id)
def test_backward_under_the_interpreter(case):
    check(case.fn, *make_inputs(case), grad=True, atol=case.tol, rtol=case.tol, options=INTERPRET)


@pytest.mark.parametrize("case", NN + REDUCTION_CASES, ids=lambda c: c.id)
def test_mtia_plan_under_the_interpreter(case):
    check(case.fn, *make_inputs(case), atol=case.tol, rtol=case.tol, options=MTIA)


@pytest.mark.parametrize("fn", [lambda x: x.softmax(-1), lambda x: F.layer_norm(x, (70000,)),
                                lambda x: x.amax(-1) + x.argmin(-1)], ids=["softmax", "layer_norm", "amax_argmin"])
def test_looped_reductions_under_the_interpreter(fn):
    """Rows longer than h100's local SRAM: the plan loops over RBLOCK steps."""
    x = torch.randn(3, 70000)
    out, kernels = planned_kernels(fn, (x,), INTERPRET)
    assert any(k.tiling.strategy == "looped" and k.target == "triton" for k in kernels)
    torch.testing.assert_close(out, fn(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("options", [INTERPRET, MTIA], ids=["h100", "mtia-v2"])
@pytest.mark.parametrize("model, example, grad", [(Block(32, 2), torch.randn(2, 8, 32), True),
                                                  (TinyGPT(64, 32, 2, 2, 16), torch.randint(0, 64, (2, 8)), False)],
                         ids=["block", "tinygpt"])
def test_gpt2_style_block_runs_under_the_interpreter(options, model, example, grad):
    check(model, example, grad=grad, atol=1e-4, rtol=1e-4, options=options)


@pytest.mark.parametrize("shape", [(40, 64), (2, 20, 64)], ids=["rows", "batch_sequence"])
def test_matmul_template_with_fused_epilogue(shape):
    """Linear + GELU on h100: one Triton kernel (tl.dot over the chosen tile, GELU on the tile),
    also where the GELU iterates the matmul's rows split in two dims ([batch, sequence, n])."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.GELU())
    x = torch.randn(*shape)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        model, inputs = mlp.to(dtype), (x.to(dtype),)
        out, [kernel] = compiled_kernels(model, inputs, INTERPRET)
        assert kernel.origins[0] == "aten.addmm" and "_dot(a, b" in kernel.source
        with torch.no_grad():
            torch.testing.assert_close(out, model(*inputs), rtol=tol, atol=tol)


REAL_TARGETS = [p for p in PROFILES if get_profile(p).triton_target]


@pytest.mark.parametrize("profile", REAL_TARGETS)
@pytest.mark.parametrize("graph", list(graphs()))
def test_golden_kernels_compile_for_the_real_target(graph, profile):
    """Ahead of time, without a GPU: every kernel builds for the profile's target and uses no
    more shared memory than the profile's local SRAM."""
    fn, inputs = graphs()[graph]
    with torch.no_grad():
        report = torch_hetero.explain(fn, *inputs, device=profile)
    source = report.code.get("inference.triton.py")
    if source is None:
        pytest.skip("no generated kernels")
    torch._dynamo.reset()
    _, kernels = compiled_kernels(fn, inputs, {"device": profile})
    shared = triton_run.compile_ahead(source, kernels, get_profile(profile).triton_target)
    assert set(shared) == {k.name for k in kernels}
    assert not any(r.problems(get_profile(profile).local_sram_bytes) for r in shared.values()), shared


def test_explain_shows_triton_code_for_a_triton_profile_run_on_the_host():
    report = torch_hetero.explain(lambda x: x.softmax(-1), torch.randn(8, 32), device="mi300x")
    assert "@triton.jit" in report.code["inference.triton.py"] and "inference.cpp" in report.code
    assert [k.target for k in report.kernels] == ["cpp"]  # auto on a CPU-only machine: the host runs it


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a GPU")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_natively_on_the_gpu(case):
    name = torch.cuda.get_device_name()
    device = "mi300x" if "MI300" in name else ("h200" if "H200" in name else "h100")
    inputs = [a.cuda() if isinstance(a, torch.Tensor) else a for a in make_inputs(case)]
    fn = copy.deepcopy(case.fn).cuda() if isinstance(case.fn, torch.nn.Module) else case.fn
    try:
        fn(*inputs)
    except RuntimeError as error:  # the case makes tensors of its own, on the CPU
        if "device" not in str(error):
            raise
        pytest.skip(f"eager fails on GPU inputs: {str(error).splitlines()[0]}")
    check(fn, *inputs, atol=max(case.tol, 1e-4), rtol=max(case.tol, 1e-4),
          options={"device": device, "executor": "native"})


def test_a_kernel_reading_back_what_it_stored_synchronizes_first():
    """A GPU runs a program's threads in parallel: the mean a variance kernel stores and reads
    back must be visible to every thread (the interpreter, one thread, cannot show the race)."""
    code = torch_hetero.explain(torch.var_mean, torch.randn(37, 70), device="h200").code["inference.triton.py"]
    kernel = code[code.index("def kernel0"):]
    store, load = kernel.index("tl.store(buf0"), kernel.index("tl.load(buf0")
    assert store < kernel.index("tl.debug_barrier()", store) < load
