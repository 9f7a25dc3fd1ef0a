"""Which generated host loops does g++ leave scalar?  Compiles the suite's models (inference and
one training step), rebuilds every graph's C++ with the build's own flags plus
``-fopt-info-vec-optimized -fopt-info-loop-optimized``, and lists each ``#pragma omp simd``
loop that g++ neither vectorized nor turned into a memset/memcpy, with its kernel's ATen ops.

    python benchmarks/vectorization.py [--models gpt2,bert,...] [--min-trip 16]

Loops shorter than ``--min-trip`` iterations are not listed (g++ rightly leaves them)."""
from __future__ import annotations

import argparse
import copy
import os
import re
import subprocess
import sys
import tempfile
import warnings

import torch

from torch_hetero.backend import collect_compiled_graphs
from torch_hetero.codegen.renderers import HOST, RENDERERS
from torch_hetero.errors import GraphFallbackWarning
from torch_hetero.runtime import cpp_build
from torch_hetero.tools import model_zoo

sys.path.insert(0, os.path.dirname(__file__))
from suite import training_step  # noqa: E402

_LOOP = re.compile(r"for \(int64_t \w+ = 0; \w+ < (\w+); \+\+\w+\)")


def _done_lines(path: str, source: str) -> set:
    """Lines of loops g++ vectorized or replaced by a library call."""
    flags = [f for f in cpp_build.compile_flags(source) if not f.startswith("-l") and f != "-shared"]
    result = subprocess.run([cpp_build.find_compiler(), *flags, "-c", path, "-o", os.devnull,
                             "-fopt-info-vec-optimized", "-fopt-info-loop-optimized"], capture_output=True, text=True)
    done = re.compile(rf"{re.escape(path)}:(\d+):\d+: optimized: "
                      r"(loop vectorized|Loop (?:nest )?\d+ distributed: split to 0 loops)")
    return {int(m.group(1)) for m in done.finditer(result.stderr)}


def _loop_end(lines: list, start: int) -> int:
    depth = 0
    for i in range(start, len(lines)):
        depth += lines[i].count("{") - lines[i].count("}")
        if depth <= 0 and "}" in lines[i]:
            return i
    return len(lines) - 1


def scalar_loops(source: str, min_trip: int) -> list:
    """(kernel's first line, loop line) of every simd loop g++ left scalar."""
    with tempfile.NamedTemporaryFile("w", suffix=".cpp", delete=False) as f:
        f.write(source)
    try:
        done = _done_lines(f.name, source)
    finally:
        os.unlink(f.name)
    lines, kernel, found = source.split("\n"), "", []
    for i, line in enumerate(lines):
        if line.startswith("// "):
            kernel = line[3:]
        if not line.strip().startswith("#pragma omp simd"):
            continue
        trip = _LOOP.search(lines[i + 1])
        if trip and trip.group(1).isdigit() and int(trip.group(1)) < min_trip:
            continue
        end = _loop_end(lines, i + 1)
        if not any(i + 1 <= n <= end + 1 for n in done):  # g++ reports the pragma's line or the loop's
            found.append((kernel, lines[i + 1].strip()))
    return found


def main():
    warnings.simplefilter("error", GraphFallbackWarning)  # it measures compiled graphs: one run eagerly is an error
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(model_zoo.NAMES))
    parser.add_argument("--min-trip", type=int, default=16)
    args = parser.parse_args()
    total = 0
    for name in args.models.split(","):
        zoo = model_zoo.build(name)
        for mode in ("inference", "training"):
            torch._dynamo.reset()
            model = copy.deepcopy(zoo.model).train() if mode == "training" else zoo.model
            compiled = torch.compile(model, backend="hetero")
            run = training_step(zoo, compiled) if mode == "training" else compiled
            with torch.enable_grad() if mode == "training" else torch.no_grad(), collect_compiled_graphs() as graphs:
                run(*zoo.inputs)
            for kind, graph, _ in graphs:
                kernels = [k.source for k in graph.rendered.get(HOST, ())]
                if not kernels:
                    continue
                for ops, loop in scalar_loops(RENDERERS[HOST].module(kernels), args.min_trip):
                    total += 1
                    print(f"{name} {kind}: {loop}   [{ops[:100]}]")
    print(f"{total} simd loop(s) left scalar")


if __name__ == "__main__":
    main()
