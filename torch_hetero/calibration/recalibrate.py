"""``python -m torch_hetero calibrate``: measure this host again and print every figure."""
from __future__ import annotations

from ..device_models import host
from . import calibrate


def recalibrate() -> str:
    """Measure this host again (``python -m torch_hetero calibrate``); the figures, as text."""
    model, cores, bf16_matrix, isa, l2, llc = host.identity()
    record = calibrate.load(model, cores, bf16_matrix, l2, llc, force=True)
    host.host_profile.cache_clear()
    return describe(record, model, cores, isa, calibrate.cache_path(model, cores, bf16_matrix))


def describe(record: dict, model: str, cores: int, isa: str, path: str) -> str:
    """A calibration record as text: every figure, and when and how it was measured."""
    figures, measured = record["figures"], record["measured"]
    sizes = measured["sizes"]

    def size(level):
        return f"{sizes[level]['threads']} thread(s), {sizes[level]['bytes'] / 2**20:.4g} MiB"
    lines = [f"cpu: {model}, {cores} cores, {isa}, {record['host']['threads']} torch threads",
             f"  private cache     {figures['local_sram_gbps']:.4g} GB/s per core  ({size('local_sram_gbps')})",
             f"  last-level cache  {figures['llc_gbps']:.4g} GB/s, {figures['llc_bytes'] / 2**20:.4g} MiB effective"
             f"  ({size('llc_gbps')})",
             f"  memory bandwidth  {figures['dram_gbps']:.4g} GB/s  ({size('dram_gbps')})",
             f"  fp32 matmul       {figures['fp32_tflops']:.4g} TFLOP/s  ({calibrate.MATMUL_N}x{calibrate.MATMUL_N})",
             f"  kernel call       {figures['call_us']:.3g} µs serial, {figures['parallel_call_us']:.3g} µs with "
             f"OpenMP fork/join (the wrapper's step: output, call); an ATen call {figures['aten_call_us']:.3g} µs"]
    if "bf16_tflops" in figures:
        lines.append(f"  bf16 matmul       {figures['bf16_tflops']:.4g} TFLOP/s  (AMX)")
    lines.append(f"  ns per element, one core, above a copy's ({measured['op_elements']} elements; arith: per op, "
                 "*_step: with its load): op  vector  scalar  vector, half the argument -inf")
    for op, kinds in figures["op_ns"].items():
        vector, infinite = (f"{kinds[kind]:.3g}" if kind in kinds else "-" for kind in ("vector", "vector_inf"))
        lines.append(f"    {op:<15}{vector:>8}{kinds['scalar']:>8.3g}{infinite:>8}")
    for clamp in measured["clamped"]:
        lines.append(f"  clamped: {clamp['figure']} measured {clamp['measured']:.4g}, using {clamp['used']:.4g}")
    lines.append(f"measured at {measured['at']} in {measured['seconds']:.2f} s, load average "
                 f"{' '.join(map(str, measured['loadavg']))}; {measured['method']}")
    lines.append(f"cached in {path}")
    return "\n".join(lines)
