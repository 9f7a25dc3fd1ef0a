"""The cost model behaves as physics says, and explain() carries its estimates."""
import dataclasses
import os
import re

import pytest
import torch

import torch_hetero
from torch_hetero.backend import collect_compiled_graphs
from torch_hetero.device_models import get_profile
from torch_hetero.planning.cost_model import MemoryModel, estimate_kernel, estimate_matmul, parallel_efficiency
from torch_hetero.planning.kernel_analysis import KernelCost

MB = 1 << 20


def kernel(nbytes=64 * MB, flops=16e6, chunks=1 << 16, reads=("a",)):
    per = nbytes / 2 / len(reads)
    return KernelCost(flops, 0.0, {}, {r: per for r in reads}, {"out": nbytes / 2}, chunks, outputs=1 << 20)


def time_us(cost, profile, memory=None):
    return estimate_kernel(cost, profile, memory or MemoryModel(profile), torch.float32).time_us


@pytest.mark.parametrize("name", ["h100", "a100", "mi300x", "mtia-v2", "rivos-sim", "cpu"])
def test_more_bandwidth_or_compute_is_never_slower(name):
    profile = get_profile(name)
    faster_memory = dataclasses.replace(profile, dram_gbps=profile.dram_gbps * 2, llc_gbps=profile.llc_gbps * 2)
    faster_compute = dataclasses.replace(
        profile, peak_tflops_vector={k: v * 2 for k, v in profile.peak_tflops_vector.items()})
    for cost in (kernel(), kernel(nbytes=4096, flops=1e9)):
        assert time_us(cost, faster_memory) <= time_us(cost, profile)
        assert time_us(cost, faster_compute) <= time_us(cost, profile)


def test_sram_resident_tensor_is_cheaper_on_mtia():
    """On MTIA v2 a 32 MB tensor written by the previous kernel stays in the 256 MB SRAM."""
    profile = get_profile("mtia-v2")
    memory = MemoryModel(profile)
    estimate_kernel(KernelCost(0, 0, {}, {}, {"a": 32 * MB}, 1 << 16), profile, memory, torch.float32)
    resident = time_us(kernel(nbytes=64 * MB), profile, memory)
    from_lpddr = time_us(kernel(nbytes=64 * MB), profile)
    assert resident < from_lpddr / 2


def test_tensor_larger_than_sram_comes_from_dram():
    profile = get_profile("mtia-v2")
    memory = MemoryModel(profile)
    big = 2 * profile.llc_bytes
    estimate_kernel(KernelCost(0, 0, {}, {}, {"a": big}, 1 << 16), profile, memory, torch.float32)
    assert "a" not in memory.resident


def test_wave_quantization_and_padding():
    assert parallel_efficiency(132, 132) == 1.0
    assert parallel_efficiency(133, 132) == pytest.approx(133 / 264)
    h100 = get_profile("h100")
    aligned = estimate_matmul(1, 4096, 4096, 4096, torch.bfloat16, {}, {}, h100, MemoryModel(h100))
    ragged = estimate_matmul(1, 4096 + 1, 4096, 4096, torch.bfloat16, {}, {}, h100, MemoryModel(h100))
    assert ragged.compute_us / ragged.flops > aligned.compute_us / aligned.flops


def test_bound_names_the_largest_part():
    profile = get_profile("h100")
    assert estimate_kernel(kernel(nbytes=16), profile, MemoryModel(profile), torch.float32).bound == "launch"
    assert estimate_kernel(kernel(), profile, MemoryModel(profile), torch.float32).bound == "memory"
    assert estimate_kernel(kernel(nbytes=16, flops=1e13), profile, MemoryModel(profile),
                           torch.float32).bound == "compute"


def test_explain_reports_estimates_for_several_devices():
    def block(x, w):
        return torch.nn.functional.gelu(x @ w).softmax(-1)
    x, w = torch.randn(64, 128), torch.randn(128, 256)
    reports = torch_hetero.explain(block, x, w, device=["h100", "mtia-v2", "cpu"])
    assert list(reports) == ["h100", "mtia-v2", "cpu"]
    for name, report in reports.items():
        assert report.device == name
        assert report.kernels and all(k.estimate_us > 0 and k.bytes > 0 and k.flops >= 0 and
                                      k.bound in ("compute", "memory", "launch") for k in report.kernels)
        # the matmul runs as an extern, or with GELU as its epilogue on an accelerator
        assert any("aten.mm" in e.name for e in report.externs) or any("aten.mm" in k.aten_ops for k in report.kernels)
        assert all(e.estimate_us > 0 for e in report.externs)
        parts = sum(k.estimate_us for k in report.kernels) + sum(e.estimate_us for e in report.externs)
        assert report.estimate_us == pytest.approx(parts)
        assert "estimated" in str(report)
    # launch overhead dominates this small graph: MTIA v2's < 1 µs launches beat a GPU's ~5 µs
    assert reports["mtia-v2"].estimate_us < reports["h100"].estimate_us


def kernel_estimates(fn, *inputs, device="cpu"):
    report = torch_hetero.explain(fn, *inputs, device=device)
    return [k.estimate_us for k in report.kernels]


def test_transposing_copy_costs_more_than_a_contiguous_one():
    """A load striding along the innermost loop pays a cache line per element."""
    x = torch.randn(1024, 1024)
    [transposed] = kernel_estimates(lambda x: x.t().contiguous() * 2, x)
    [contiguous] = kernel_estimates(lambda x: x * 2, x)
    assert transposed > 4 * contiguous


def test_serial_arg_reduction_costs_more_than_vectorized_max_and_sum_on_the_host():
    """argmax is one dependency chain per row; amax vectorizes (codegen.cpp._extremum) like a sum."""
    x = torch.randn(512, 1024)
    [position] = kernel_estimates(lambda x: x.argmax(-1), x)
    [amax] = kernel_estimates(lambda x: x.amax(-1), x)
    [total] = kernel_estimates(lambda x: x.sum(-1), x)
    assert position > 2 * amax
    assert amax == pytest.approx(total, rel=0.05)


def test_reuse_distance_decides_the_memory_level():
    """On the host a buffer just written is re-read from the cores' caches; after more than
    the last-level cache's worth of other traffic it comes from DRAM."""
    profile = get_profile("cpu")
    memory = MemoryModel(profile)
    small = profile.local_sram_bytes / 4
    memory.seconds({}, {"a": small}, 1.0)
    hot = memory.seconds({"a": small}, {}, 1.0)
    memory.seconds({}, {"big": 2 * profile.llc_bytes}, 1.0)
    cold = memory.seconds({"a": small}, {}, 1.0)
    assert cold == pytest.approx(small / (profile.dram_gbps * 1e9))
    assert hot == pytest.approx(small / (profile.compute_units * profile.local_sram_gbps * 1e9))


def test_graph_inputs_start_resident():
    profile = get_profile("mtia-v2")
    warm = MemoryModel(profile, {"x": 32 * MB})
    assert warm.seconds({"x": 32 * MB}, {}, 1.0) < MemoryModel(profile).seconds({"x": 32 * MB}, {}, 1.0) / 2


def test_the_readmes_what_if_loop_runs_as_written(capsys):
    """explain(..., device=[...]) returns a dict keyed by device; the README's loop over it runs."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    [block] = [b.split("\n", 1)[1] for b in re.findall(r"```python\n.*?```", readme, re.S) if "device=[" in b]
    exec(block.removesuffix("```"), {"torch_hetero": torch_hetero, "model": torch.nn.Linear(8, 4),
                                     "example_input": torch.randn(2, 8)})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["h100", "mtia-v2", "cpu"]
    assert all(" us, fallbacks {}" in line for line in lines)


def host_calls(fn, *inputs):
    """The priced ops (host_ops) each host kernel of ``fn`` evaluates: (op, loop kind) → count."""
    torch._dynamo.reset()
    with torch.no_grad(), collect_compiled_graphs() as graphs:
        torch.compile(fn, backend="hetero")(*inputs)
    return [kernel.cost.calls for _, graph, _ in graphs for kernel in graph.plan.kernels]


def test_the_host_counts_the_ops_it_prices():
    """libm calls and selects by name; a division unless hoisted (softmax divides by its row's
    sum, kept in a variable: a multiply by the hoisted reciprocal)."""
    x, y = torch.randn(64, 256), torch.randn(64, 256)
    n = x.numel()
    assert host_calls(lambda x, y: x / y, x, y) == [{("truediv", "vector"): n}]
    assert host_calls(lambda x: x / 3.0, x) == [{("truediv", "vector"): n}]  # no fast-math: a division
    assert host_calls(lambda x, y: torch.where(x > 0, x.exp(), y), x, y) == [
        {("exp", "vector"): n, ("where", "vector"): n, ("arith", "vector"): n}]  # x > 0: arithmetic
    [softmax] = host_calls(lambda x: x.softmax(-1), x)
    assert ("truediv", "vector") not in softmax and softmax[("exp", "vector")] >= n
    [argmax] = host_calls(lambda x: x.argmax(-1), x)
    assert all(kind == "scalar" for _, kind in argmax)


def test_a_call_on_a_masked_argument_is_counted_apart():
    """A mask's -inf flowing into exp (a causal softmax) sends libmvec's lanes to its slow path:
    counted as ``vector_inf``; an unmasked softmax's exp, and exp of a masked value's
    result, are not."""
    x = torch.randn(64, 256)
    mask = torch.ones(64, 256, dtype=torch.bool).tril()
    n = x.numel()
    [masked] = host_calls(lambda x, m: x.masked_fill(~m, float("-inf")).softmax(-1), x, mask)
    assert masked[("exp", "vector_inf")] == n and ("exp", "vector") not in masked
    [plain] = host_calls(lambda x: x.softmax(-1), x)
    assert ("exp", "vector") in plain and not any(kind == "vector_inf" for _, kind in plain)
    [after] = host_calls(lambda x, m: x.masked_fill(~m, float("-inf")).exp().sin(), x, mask)
    assert after == {("exp", "vector_inf"): n, ("sin", "vector"): n, ("where", "vector"): n, ("arith", "vector"): n}


def test_plain_arithmetic_is_counted_per_op_as_the_host_measures_it():
    """Adds, multiplies, compares and a hoisted division are ``arith`` (per op and element, in
    the loop's kind), priced at what the host measured rather than at the sgemm FLOP/s; a row
    reduction's combine is a step of its own (its accumulator's latency), a column reduction's
    and a serial one's plain arithmetic."""
    x = torch.randn(64, 256)
    n = x.numel()
    assert host_calls(lambda x: x * 2 + 1, x) == [{("arith", "vector"): 2 * n}]
    assert host_calls(lambda x: x.sum(-1), x) == [{("sum_step", "vector"): n}]
    assert host_calls(lambda x: x.amax(-1), x) == [{("max_step", "vector"): n}]
    assert host_calls(lambda x: x.sum(0), x) == [{("arith", "vector"): n}]
    [argmax] = host_calls(lambda x: x.argmax(-1), x)
    assert argmax[("arith", "scalar")] >= n and not any(op.endswith("_step") for op, _ in argmax)
    profile = get_profile("cpu")
    cost = KernelCost(0, 0, {("arith", "vector"): n, ("arith", "scalar"): n}, {}, {}, 1)
    estimate = estimate_kernel(cost, profile, MemoryModel(profile), torch.float32)
    per_op_ns = profile.vector_op_ns["arith"] + profile.scalar_op_ns["arith"]
    assert estimate.compute_us == pytest.approx(n * per_op_ns * 1e-3)
    assert profile.scalar_op_ns["arith"] > profile.vector_op_ns["arith"] > 0


def test_a_host_kernel_pays_the_measured_call_and_fork_join_only_when_parallel():
    profile = dataclasses.replace(get_profile("cpu"), host_call_us=0.7, launch_overhead_us=4.0)
    serial, parallel = (estimate_kernel(KernelCost(0, 0, {}, {}, {}, chunks), profile, MemoryModel(profile),
                                        torch.float32) for chunks in (1, 64))
    assert (serial.launch_us, parallel.launch_us) == (0.7, 4.0)


def test_a_host_extern_pays_the_measured_aten_call():
    profile = dataclasses.replace(get_profile("cpu"), extern_call_us=3.0, launch_overhead_us=0.5)
    estimate = estimate_matmul(1, 4, 4, 4, torch.float32, {}, {}, profile, MemoryModel(profile))
    assert estimate.launch_us == 3.0


def test_host_compute_is_priced_by_the_measured_op_times():
    """What the host measured per element (one core) is what an op costs, spread over the cores."""
    profile = get_profile("cpu")
    n, chunks = 1e6, 1 << 16
    cost = KernelCost(0, 0, {("exp", "vector"): n, ("truediv", "scalar"): n, ("tanh", "vector_inf"): n}, {}, {},
                      chunks)
    for exp_ns, div_ns, tanh_ns in [(1.0, 2.0, 4.0), (3.0, 0.5, 0.25)]:
        measured = dataclasses.replace(profile, vector_op_ns={**profile.vector_op_ns, "exp": exp_ns},
                                       scalar_op_ns={**profile.scalar_op_ns, "truediv": div_ns},
                                       vector_inf_op_ns={**profile.vector_inf_op_ns, "tanh": tanh_ns})
        estimate = estimate_kernel(cost, measured, MemoryModel(measured), torch.float32)
        units = profile.compute_units * parallel_efficiency(chunks, profile.compute_units)
        assert estimate.compute_us == pytest.approx(n * (exp_ns + div_ns + tanh_ns) * 1e-3 / units)
