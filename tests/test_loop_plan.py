"""A kernel's host loops are planned once (``planning.loop_plan``): the cost analysis counts
them and the C++ renderer emits them as planned."""
import dataclasses

import pytest
import torch

from torch_hetero.backend import collect_compiled_graphs
from torch_hetero.codegen.cpp import render_kernel


@dataclasses.dataclass
class HostKernel:
    """A kernel's plan and the C++ rendered from it."""
    plan: object    # planning.plan.KernelPlan
    source: str

    @property
    def loops(self):
        return self.plan.cost.loops


def host_kernels(fn, *inputs):
    torch._dynamo.reset()
    with torch.no_grad(), collect_compiled_graphs() as graphs:
        torch.compile(fn, backend="hetero")(*inputs)
    return [HostKernel(plan, rendered.source) for _, graph, _ in graphs
            for plan, rendered in zip(graph.plan.kernels, graph.kernels, strict=True)]


def test_the_plan_says_which_loops_vectorize_and_which_are_serial():
    x = torch.randn(64, 256)
    [total] = host_kernels(lambda x: x.sum(-1), x)
    [loops] = total.loops.nodes
    assert loops.vectorized and not loops.serial and "#pragma omp simd reduction(+:acc0)" in total.source
    [argmax] = host_kernels(lambda x: x.argmax(-1), x)
    [loops] = argmax.loops.nodes
    assert loops.serial and not loops.vectorized and "omp simd" not in argmax.source
    assert all(kind == "scalar" for _, kind in argmax.plan.cost.calls)


def test_a_scatter_runs_in_order():
    index = torch.randint(0, 64, (4096,))
    [*_, scatter] = host_kernels(lambda x, i, v: x.index_add(0, i, v), torch.zeros(64), index, torch.randn(4096))
    assert not scatter.loops.nodes[-1].vectorized and not scatter.loops.parallel


def test_a_loop_over_a_reshaped_view_is_split():
    """Heads moved back next to each other: x // 16 and x % 16 per element, unless the loop is
    split in two (16 elements inside)."""
    x = torch.randn(4, 8, 64, 16)
    [kernel] = host_kernels(lambda x: x.transpose(1, 2).reshape(4, 64, 128) * 2, x)
    [loops] = kernel.loops.nodes
    assert loops.split == 16 and loops.inner[-2:] == (8, 16) and loops.vectorized


def test_channels_shorter_than_a_vector_are_vectorized_along_the_pixels():
    """An NCHW image's 3 channels to channels-last: the simd loop runs along the row's 64
    pixels (contiguous loads, g++ interleaves the 3 stores) around the unrolled channel loop,
    not 3 channels at a time; 16 channels keep the simd loop over channels."""
    to_channels_last = lambda x: x.contiguous(memory_format=torch.channels_last) + 1  # noqa: E731
    image = torch.randn(4, 3, 64, 64)
    [kernel] = host_kernels(to_channels_last, image)
    [loops] = kernel.loops.nodes
    assert loops.outer_lanes and loops.inner == (3,)
    simd = kernel.source.index("#pragma omp simd")
    assert "for (int64_t i2 = 0; i2 < 64" in kernel.source[simd:].splitlines()[1]
    assert "collapse(2)" in kernel.source
    out = torch.compile(to_channels_last, backend="hetero")(image)
    assert torch.equal(out, to_channels_last(image)) and out.stride() == to_channels_last(image).stride()
    [wide] = host_kernels(to_channels_last, torch.randn(2, 16, 64, 64))
    assert not wide.loops.nodes[0].outer_lanes and "for (int64_t x0 = 0; x0 < 16" in wide.source


def _simd_loop_bodies(source: str, variable: str = "") -> list:
    """The lines inside each simd loop of ``source`` (by indentation), or only those over
    ``variable``."""
    lines, bodies = source.splitlines(), []
    for i, line in enumerate(lines):
        if "#pragma omp simd" in line and f"int64_t {variable}" in lines[i + 1]:
            depth = len(lines[i + 1]) - len(lines[i + 1].lstrip())
            body = []
            for inner in lines[i + 2:]:
                if len(inner) - len(inner.lstrip()) <= depth:
                    break
                body.append(inner)
            bodies.append(body)
    return bodies


def test_what_a_simd_loop_does_not_change_is_computed_before_it():
    """An embedding row's index (a load, its cast and wrap) is read once per row, before the
    row's simd loops, so that g++ loads the row contiguously instead of gathering it; a
    value assigned under a mask (a padded quotient, divided only inside) stays inside."""
    table, ids = torch.randn(100, 256), torch.randint(-100, 100, (2, 64))
    fn = lambda t, i: (lambda r: r * (r * r).mean(-1, keepdim=True).rsqrt())(t[i] + 1)  # noqa: E731
    sources = [k.source for k in host_kernels(fn, table, ids)]
    rows = [body for source in sources for body in _simd_loop_bodies(source, "x0")
            if any("[256 * idx" in line for line in body)]
    assert rows and not any("idx" in line.split("=")[0] for body in rows for line in body), sources
    torch.testing.assert_close(torch.compile(fn, backend="hetero")(table, ids), fn(table, ids))
    masked = lambda x, y: torch.nn.functional.pad(x // y[:, :252], (2, 2)) * y  # noqa: E731
    x, y = torch.randint(-50, 50, (8, 252)), torch.randint(1, 9, (8, 256))
    [kernel] = host_kernels(masked, x, y)
    [body] = _simd_loop_bodies(kernel.source)
    assert any(line.strip().startswith("if (") for line in body), kernel.source
    assert torch.equal(torch.compile(masked, backend="hetero")(x, y), masked(x, y))


@pytest.mark.parametrize("fn", [lambda x: (x * 2).sum(-1), lambda x: x.amax(-1), lambda x: x.exp() + 1],
                         ids=["sum", "max", "pointwise"])
def test_the_renderer_emits_the_plan_it_is_given(fn):
    [kernel] = host_kernels(fn, torch.randn(64, 256))
    plan = kernel.loops
    assert render_kernel(kernel.plan, {}).source == kernel.source
    scalar = dataclasses.replace(plan, nodes=tuple(dataclasses.replace(n, vectorized=False) for n in plan.nodes))
    scalar_kernel = dataclasses.replace(kernel.plan, cost=dataclasses.replace(kernel.plan.cost, loops=scalar))
    assert "omp simd" in kernel.source and "omp simd" not in render_kernel(scalar_kernel, {}).source
