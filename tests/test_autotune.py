"""max-autotune's logic without a GPU: the candidates around the analytic tile, the on-disk
cache, and the decision the planner takes from the times.  The times here come from a
function the test hands in — this is a unit test of the logic, NOT a GPU measurement (no GPU
is lent to these tests; ``benchmarks/gpu_session.sh`` times the real thing)."""
import dataclasses

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from torch_hetero import compiler
from torch_hetero.device_models import get_profile
from torch_hetero.graph import GraphLowering
from torch_hetero.options import Options, resolve
from torch_hetero.planning.gemm_choice import LIBRARY, UNTIMED, Timed, Tuning, candidates
from torch_hetero.planning.passes import build_plan
from torch_hetero.planning.plan import schedule_text
from torch_hetero.planning.tiling import matmul_tile, plan_matmul
from torch_hetero.runtime import autotune
from torch_hetero.tools.report import compile_and_run, report_of

SHAPE = (1, 256, 384, 512, torch.bfloat16)  # batch, m, n, k


def _graph(profile, a=None, b=None):
    if a is None:
        a, b = torch.randn(256, 512).to(torch.bfloat16), torch.randn(512, 384).to(torch.bfloat16)
    return GraphLowering(make_fx(lambda a, b: (torch.mm(a, b),))(a, b), profile.target, profile.name, False).run()


def test_candidates_are_the_analytic_tile_the_library_and_fitting_neighbours():
    h100 = get_profile("h100")
    tile = plan_matmul(*SHAPE, h100)
    found = candidates(tile, torch.bfloat16, h100)
    assert found[:2] == [("template", tile.bm, tile.bn, tile.bk, tile.stages), LIBRARY]
    assert len(found) == len(set(found)) and 4 <= len(found) <= 10
    for _, bm, bn, bk, stages in found[2:]:
        assert matmul_tile(bm, bn, bk, stages, *SHAPE, h100) is not None  # fits local SRAM
        assert bm % 64 == 0 and bn % 16 == 0 and bk % 16 == 0            # wgmma multiples, tl.dot's 16
        assert sum((x, y, z, s) != (tile.bm, tile.bn, tile.bk, tile.stages) for x, y, z, s in [(bm, bn, bk, stages)])
    assert found == candidates(tile, torch.bfloat16, h100)
    rivos = get_profile("rivos-sim")
    assert LIBRARY not in candidates(plan_matmul(*SHAPE, rivos), torch.bfloat16, rivos)


def test_times_are_cached_on_disk_by_device_shape_and_candidates(tmp_path):
    calls = []

    def fake(candidate):
        calls.append(candidate)
        return 1e-6 * (len(calls) + 1)
    options = [("template", 64, 64, 64, 2), LIBRARY]
    first, cached = autotune.measure("GPU A", SHAPE, options, fake, str(tmp_path))
    assert not cached and len(calls) == 2 and first[LIBRARY] == 3.0
    again, cached = autotune.measure("GPU A", SHAPE, options, fake, str(tmp_path))
    assert cached and again == first and len(calls) == 2          # no second timing
    _, cached = autotune.measure("GPU B", SHAPE, options, fake, str(tmp_path))
    assert not cached and len(calls) == 4                         # another device times again
    _, cached = autotune.measure("GPU A", SHAPE, options[:1], fake, str(tmp_path))
    assert not cached and len(calls) == 5                         # other candidates too
    for entry in (tmp_path / "autotune").iterdir():
        entry.write_text("not json")
    _, cached = autotune.measure("GPU A", SHAPE, options, fake, str(tmp_path))
    assert not cached and len(calls) == 7                         # a broken entry is timed again


def test_the_timed_tile_and_choice_reach_the_plan(tmp_path):
    """Times where a neighbour tile beats the analytic one and both beat the library: the plan
    generates the GEMM in the timed tile and says it was timed; then a fast library wins."""
    h100 = get_profile("h100")
    graph = _graph(h100)
    analytic = plan_matmul(*SHAPE, h100)
    neighbour = candidates(analytic, torch.bfloat16, h100)[2]

    def times(library_s):
        return lambda call: lambda c: library_s if c == LIBRARY else (1e-6 if c == neighbour else 2e-6)
    tuning = autotune.tune(autotune.matmul_calls(graph), h100, graph.size_hints, "GPU A", times(5e-6), str(tmp_path))
    [timed] = tuning.timed.values()
    assert (timed.tile.bm, timed.tile.bn, timed.tile.bk, timed.tile.stages) == neighbour[1:]
    plan = build_plan(graph, h100, "triton", tuning=tuning)
    text = schedule_text(plan, {k.name: [] for k in plan.kernels})
    [kernel] = plan.kernels
    assert kernel.matmul_tile == timed.tile and "generated in the device model's tile: timed 1 us vs cuBLAS 5 us" in text
    assert "max-autotune timed" in text and "analytic tile 2 us" in text
    tuning = autotune.tune(autotune.matmul_calls(graph), h100, graph.size_hints, "GPU B", times(0.5e-6), str(tmp_path))
    plan = build_plan(graph, h100, "triton", tuning=tuning)
    assert not plan.kernels and "library call: cuBLAS, declared by the profile; timed cuBLAS 0.5 us" in plan.externs[0].reason


def test_without_a_gpu_the_analytic_choice_stands_and_says_so():
    a, b = torch.randn(256, 512).to(torch.bfloat16), torch.randn(512, 384).to(torch.bfloat16)
    assert resolve({"device": "h100"}, mode="max-autotune").autotune
    torch._dynamo.reset()
    with torch.no_grad():
        report = report_of(compile_and_run(torch.mm, (a, b), {}, {"device": "h100", "autotune": True}), "h100")
    assert UNTIMED in report.schedule and "est." in report.schedule
    torch._dynamo.reset()
    with torch.no_grad():
        plain = report_of(compile_and_run(torch.mm, (a, b), {}, {"device": "h100"}), "h100")
    assert UNTIMED not in plain.schedule


def test_a_candidate_compiles_in_its_tile_and_matches_eager():
    """What the GPU timer runs for a template candidate, here under the interpreter: the same
    compile with the tile given."""
    torch.manual_seed(0)
    a, b = torch.randn(1, 40, 48).to(torch.bfloat16), torch.randn(1, 48, 24).to(torch.bfloat16)
    options = Options(device="h100", executor="interpret")
    h100 = get_profile("h100")
    shape = (1, 40, 24, 48, torch.bfloat16)
    tile = matmul_tile(64, 32, 16, 2, *shape, h100)
    forced = Tuning({shape: Timed(tile, 0.0, float("inf"), "given")})
    compiled = compiler.compile_graph(make_fx(lambda a, b: (torch.bmm(a, b),))(a, b), options, "candidate", False, forced)
    [kernel] = compiled.plan.kernels
    assert kernel.matmul_tile == tile
    torch.testing.assert_close(compiled([a, b])[0], torch.bmm(a, b), atol=2e-2, rtol=2e-2)
    [call] = autotune.matmul_calls(_graph(h100, a[0], b[0]))
    time_fn = compiler.gpu_timer(call, {}, dataclasses.replace(options), device="cpu")
    assert time_fn(("template", 64, 32, 16, 2)) > 0 and time_fn(LIBRARY) > 0
