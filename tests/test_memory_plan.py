"""The memory plan as it runs: a kernel that reads a dying buffer only at the element it writes
overwrites it in place; a host graph keeps its intermediate buffers between calls (per thread),
never its outputs or a buffer of symbolic size."""
import threading

import pytest
import torch

from torch_hetero.backend import collect_compiled_graphs
from utils import check, compile_hetero


def _wrapper(fn, *inputs, dynamic=False, options=None) -> str:
    torch._dynamo.reset()
    with collect_compiled_graphs() as graphs:
        compile_hetero(fn, dynamic=dynamic, options=options)(*inputs)
    return graphs[0][1].code["inference.py"]


def test_an_elementwise_kernel_overwrites_the_matmul_output_it_reads():
    fn = lambda x, w: (x @ w).relu() * 2  # noqa: E731
    x, w = torch.randn(32, 16), torch.randn(16, 24)
    check(fn, x, w)
    lines = [line.strip() for line in _wrapper(fn, x, w).splitlines()]
    product = next(line for line in lines if "aten.mm" in line).split(" = ")[0]
    taken = next(i for i, line in enumerate(lines) if line.endswith(f" = {product}"))
    assert lines[taken + 1].startswith("kernel") and lines[taken + 2] == f"del {product}", lines


def test_a_row_normalization_overwrites_the_rows_its_reductions_read_first():
    """A layer norm's mean and variance read each row before the row is written: its output
    takes over the GEMM output it normalizes (in cache), not a buffer written cold."""
    fn = lambda x, w: (lambda y: (y - y.mean(-1, keepdim=True)) * (y.var(-1, keepdim=True) + 1e-5).rsqrt())(x @ w)  # noqa: E731
    x, w = torch.randn(64, 16), torch.randn(16, 96)
    check(fn, x, w)
    lines = [line.strip() for line in _wrapper(fn, x, w).splitlines()]
    product = next(line for line in lines if "aten.mm" in line).split(" = ")[0]
    assert any(line.endswith(f" = {product}") for line in lines), lines


@pytest.mark.parametrize("fn", [
    pytest.param(lambda x, w: (x @ w).flip(0) + 1, id="reads-another-element"),
    pytest.param(lambda x, w: (lambda y: y - y.flip(0).mean(-1, keepdim=True))(x @ w),
                 id="read-by-a-reduction-of-other-rows"),
    pytest.param(lambda x, w: (x @ w).t() + 1, id="transposed"),
])
def test_no_kernel_overwrites_what_it_still_reads_elsewhere(fn):
    x, w = torch.randn(24, 16), torch.randn(16, 24)
    check(fn, x, w)
    wrapper = _wrapper(fn, x, w)
    product = next(line for line in wrapper.splitlines() if "aten.mm" in line).split(" = ")[0].strip()
    assert f"= {product}\n" not in wrapper, wrapper


def test_intermediate_buffers_are_kept_between_calls_and_outputs_are_new():
    fn = lambda x: (x.sin() @ x.cos()).tanh() + 1  # noqa: E731
    compiled = compile_hetero(fn)
    first_input, second_input = torch.randn(16, 16), torch.randn(16, 16)
    first = compiled(first_input)
    expected_first = fn(first_input)
    second = compiled(second_input)
    torch.testing.assert_close(first, expected_first)    # not overwritten by the second call
    torch.testing.assert_close(second, fn(second_input))
    wrapper = _wrapper(fn, first_input)
    assert "kept_buffers = KeptBuffers([((16, 16), (16, 1), torch.float32)" in wrapper
    assert "kept_buffers.give(kept)" in wrapper


def test_threads_calling_one_graph_each_use_their_own_buffers():
    fn = lambda x: ((x * 3).sin() @ x).relu() - x.sum()  # noqa: E731
    compiled = compile_hetero(fn)
    inputs = [torch.randn(64, 64) for _ in range(4)]
    compiled(inputs[0])
    errors = []

    def work(x):
        for _ in range(50):
            if not torch.allclose(compiled(x), fn(x), atol=1e-4, rtol=1e-4):
                errors.append(x)
                return
    threads = [threading.Thread(target=work, args=(x,)) for x in inputs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_symbolic_sizes_are_allocated_per_call():
    fn = lambda x: (x.sin() @ x.t()).relu() + 1  # noqa: E731
    wrapper = _wrapper(fn, torch.randn(8, 4), dynamic=True)
    assert "KeptBuffers" not in wrapper and "empty_strided" in wrapper


def test_an_interpreted_triton_graph_keeps_its_host_buffers_too():
    """Only a GPU's wrapper keeps nothing (its caching allocator reuses memory already)."""
    fn = lambda x: (x.sin() @ x.cos()).tanh() + 1  # noqa: E731
    assert "KeptBuffers" in _wrapper(fn, torch.randn(16, 16), options={"device": "h100", "executor": "interpret"})
