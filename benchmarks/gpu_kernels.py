"""The heavy ops we generate against the vendor libraries, on a GPU (issue 19 §3):

* matmul: our template (the profile with its BLAS library removed, so every GEMM is ours, in
  the device model's tile) against cuBLAS/hipBLASLt through ATen, over a bf16 sweep of sizes
  >= 1024 and some odd ones; the geomean of cuBLAS ms / ours (target >= 0.9x);
* attention: SDPA compiled on the profile with its attention library removed (what the
  planner generates for it) against PyTorch's flash SDPA (target >= 0.8x); a compile that
  fails says why in its row.

    python benchmarks/gpu_kernels.py [--profile h100] [--out benchmarks/results/gpu_kernels.md]
    python benchmarks/gpu_kernels.py --dry-run    (no GPU: tiny shapes under Triton's
                                                   interpreter, checked against eager, not timed)

Times: ``triton.testing.do_bench`` (median ms of repeated runs after warm-up)."""
from __future__ import annotations

import argparse
import math
import pathlib
import re
import sys
import tempfile

import torch
import torch.nn.functional as F

import torch_hetero
from torch_hetero.errors import one_line

PROFILES = pathlib.Path(torch_hetero.__file__).parent / "device_models" / "profiles"
# (m, k, n): square powers of two, LLM-like projections, and sizes no tile divides
MATMUL_SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096), (4096, 1024, 4096),
                 (1024, 4096, 1024), (8192, 1024, 4096), (1000, 1000, 1000), (1537, 2049, 1023),
                 (3000, 1000, 2000), (4095, 4097, 1025)]
# (batch, heads, sequence, head dim, causal)
ATTENTION_SHAPES = [(4, 16, 1024, 64, False), (4, 16, 1024, 64, True), (2, 16, 2048, 128, True),
                    (8, 32, 512, 128, False)]
DRY_MATMUL, DRY_ATTENTION = [(40, 72, 24)], [(1, 2, 24, 32, True)]


def without_libraries(profile: str, families: tuple, folder: str) -> str:
    """A copy of the shipped ``profile`` with the ``families`` ("blas", "attention") of its
    kernel libraries emptied: the planner then generates those ops.  Returns the file's path."""
    text = (PROFILES / f"{profile}.toml").read_text()
    for family in families:
        text, count = re.subn(rf"^{family} = \[[^\]]*\]", f"{family} = []", text, flags=re.M)
        assert count == 1, f"{profile}.toml has no one-line {family} list"
    name = f"{profile}-no-{'-'.join(families)}"
    path = pathlib.Path(folder) / f"{name}.toml"
    path.write_text(text.replace(f'name = "{profile}"', f'name = "{name}"'))
    return str(path)


def compiled(fn, profile_file: str, executor: str):
    torch._dynamo.reset()
    return torch.compile(fn, backend="hetero", options={"device": profile_file, "executor": executor, "strict": True})


def geomean(values) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def bench(fn) -> float:
    from triton.testing import do_bench
    return do_bench(fn)


def progress(row: tuple) -> tuple:
    """Each row is printed as it is measured: a run cut short by its time limit still shows them."""
    print(" | ".join(row), file=sys.stderr, flush=True)
    return row


def matmul_rows(profile_file: str, shapes, device: str, dry: bool) -> list:
    rows = []
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device).to(torch.bfloat16)
        b = torch.randn(k, n, device=device).to(torch.bfloat16)
        label = f"{m}x{k}x{n}"
        try:
            ours = compiled(torch.mm, profile_file, "interpret" if dry else "native")
            with torch.no_grad():
                error = (ours(a, b).float() - torch.mm(a, b).float()).abs().max().item()
        except Exception as failure:
            rows.append(progress((label, "-", "-", "-", f"failed: {one_line(failure)}")))
            continue
        if dry:
            rows.append(progress((label, "-", "-", "-", f"{error:.1e}")))
            continue
        library, mine = bench(lambda: torch.mm(a, b)), bench(lambda: ours(a, b))
        rows.append(progress((label, f"{library:.3f}", f"{mine:.3f}", f"{library / mine:.2f}", f"{error:.1e}")))
    return rows


def attention_rows(profile_file: str, shapes, device: str, dry: bool) -> list:
    rows = []
    for batch, heads, length, dim, causal in shapes:
        q, k, v = (torch.randn(batch, heads, length, dim, device=device).to(torch.bfloat16) for _ in range(3))
        label = f"{batch}x{heads}x{length}x{dim}{' causal' if causal else ''}"

        def sdpa(q, k, v, causal=causal):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        try:
            ours = compiled(sdpa, profile_file, "interpret" if dry else "native")
            with torch.no_grad():
                error = (ours(q, k, v).float() - sdpa(q, k, v).float()).abs().max().item()
        except Exception as failure:
            rows.append(progress((label, "-", "-", "-", f"failed: {one_line(failure)}")))
            continue
        if dry:
            rows.append(progress((label, "-", "-", "-", f"{error:.1e}")))
            continue
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def flash():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return sdpa(q, k, v)
        library, mine = bench(flash), bench(lambda: ours(q, k, v))
        rows.append(progress((label, f"{library:.3f}", f"{mine:.3f}", f"{library / mine:.2f}", f"{error:.1e}")))
    return rows


def table(title: str, library: str, rows: list, target: float) -> list:
    ratios = [float(r[3]) for r in rows if r[3] != "-"]
    lines = [f"### {title}", "", f"| shape | {library} ms | ours ms | ours × ({library} ms / ours) | max abs err |",
             "|---|---|---|---|---|"] + [f"| {' | '.join(r)} |" for r in rows]
    if ratios:
        mean = geomean(ratios)
        lines += ["", f"geomean {mean:.2f}× {library} over {len(ratios)} shapes: target ≥ {target}× — "
                      f"{'met' if mean >= target else '**missed**'}"]
    return lines + [""]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="h100", help="a shipped GPU profile: h100, h200, a100, mi300x")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "gpu_kernels.md"))
    parser.add_argument("--dry-run", action="store_true", help="no GPU: tiny shapes under the interpreter, untimed")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("no visible GPU: run with --dry-run to check the harness on the CPU")
    device = "cpu" if args.dry_run else "cuda"
    where = "dry run on the CPU (interpreter; nothing timed)" if args.dry_run else torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory() as folder:
        gemm = matmul_rows(without_libraries(args.profile, ("blas",), folder),
                           DRY_MATMUL if args.dry_run else MATMUL_SHAPES, device, args.dry_run)
        attention = attention_rows(without_libraries(args.profile, ("attention",), folder),
                                   DRY_ATTENTION if args.dry_run else ATTENTION_SHAPES, device, args.dry_run)
    library = "hipBLASLt" if args.profile == "mi300x" else "cuBLAS"
    lines = [f"## Generated kernels vs libraries: {args.profile} profile, {where}", ""]
    lines += table("bf16 matmul: our template vs the library through ATen", library, gemm, 0.9)
    lines += table("bf16 attention (SDPA, attention library removed) vs flash SDPA", "flash", attention, 0.8)
    text = "\n".join(lines)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
