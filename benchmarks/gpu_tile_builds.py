"""Registers and spills of generated GEMM and attention kernels built ahead of time for a GPU
target, in the planner's tile and in tiles given on the command line: what the device model
does not size (the register file), measured from the binaries without a GPU.

    python benchmarks/gpu_tile_builds.py [--profile h100] [--dtype bfloat16]
        [--gemm 4096x4096x4096,256x4096x256] [--gemm-tiles 256x256x64x4,128x128x64x8]
        [--attention 8x16x2048x128] [--attention-tiles 64x64x4,256x16x4]

The profile is copied without its BLAS and attention libraries, so both are our kernels;
``--gemm MxKxN``, ``--attention BxHxLxD`` (causal, forward and backward); tiles are
``BMxBNxBKxWARPS`` and ``BRxBCxWARPS``."""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import re
import tempfile

import torch
import torch.nn.functional as F

import torch_hetero
from torch_hetero.runtime import triton_run
from torch_hetero.tools.report import compile_and_run


def own_kernels_profile(profile: str, directory: str) -> str:
    """``profile`` with no BLAS or attention library: its GEMMs and attention are generated."""
    text = (pathlib.Path(torch_hetero.__file__).parent / "device_models" / "profiles" / f"{profile}.toml").read_text()
    text = text.replace(f'name = "{profile}"', f'name = "{profile}-own-kernels"')
    text = re.sub(r"^(blas|attention) = \[.*?\]", r"\1 = []", text, flags=re.M)
    text = re.sub(r"^attention_efficiency = .*\n", "", text, flags=re.M)
    path = pathlib.Path(directory) / f"{profile}-own-kernels.toml"
    path.write_text(text)
    return str(path)


def numbers(text: str) -> list:
    return [tuple(int(v) for v in item.split("x")) for item in text.split(",") if item]


def report(label: str, graph, kind: str, tiles: list, names: tuple, target: str) -> None:
    """One line per tile: the planner's (first), then each given one."""
    [kernel] = [k for k in graph.rendered["triton"] if names[0] in k.constexprs]
    plan = next(p for p in graph.plan.kernels if p.name == kernel.name)
    source = graph.code[f"{kind}.triton.py"]
    planned = plan.attention_tile or plan.matmul_tile
    candidates = [("planned", kernel)] + [
        ("given", dataclasses.replace(kernel, constexprs={**kernel.constexprs, **dict(zip(names, tile[:-1]))},
                                      launch_options=(("num_warps", tile[-1]),))) for tile in tiles]
    for origin, candidate in candidates:
        [resources] = triton_run.compile_ahead(source, [candidate], target).values()
        tile = "x".join(str(candidate.constexprs[n]) for n in names)
        print(f"| {label} | {kind} | {origin} | {tile} | {dict(candidate.launch_options).get('num_warps', 4)} | {resources.registers} "
              f"| {resources.spill_bytes} | {resources.shared_bytes} |"
              + (f" {planned}" if origin == "planned" else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="h100")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--gemm", default="4096x4096x4096,8192x1024x8192,256x4096x256")
    parser.add_argument("--gemm-tiles", default="256x256x64x4,128x256x128x4,128x128x64x8")
    parser.add_argument("--attention", default="8x16x2048x128,8x16x2048x64")
    parser.add_argument("--attention-tiles", default="64x64x4,256x16x4")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    target = torch_hetero.get_profile(args.profile).triton_target
    print(f"{args.profile} ({target}), {args.dtype}, libraries removed\n")
    print("| shape | graph | tile | BMxBNxBK or BRxBC | warps | registers | spill B | shared B |\n|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        options = {"device": own_kernels_profile(args.profile, directory)}
        for m, k, n in numbers(args.gemm):
            with torch.no_grad():
                [(kind, graph, _)] = compile_and_run(torch.mm, (torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)),
                                                     {}, options)
            report(f"mm {m}x{k}x{n}", graph, kind, numbers(args.gemm_tiles), ("BM", "BN", "BK"), target)
        for b, h, length, d in numbers(args.attention):
            q, key, v = (torch.randn(b, h, length, d).to(dtype).requires_grad_() for _ in range(3))
            graphs = compile_and_run(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True).sum()
                                     .backward(), (q, key, v), {}, options)
            for kind, graph, _ in graphs:
                report(f"sdpa {b}x{h}x{length}x{d}", graph, kind, numbers(args.attention_tiles), ("BR", "BC"), target)


if __name__ == "__main__":
    main()
