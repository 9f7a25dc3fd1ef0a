"""The ``cpu`` profile: this host, detected from /proc and /sys and calibrated by measurement.

Cores, SIMD width, caches, memory and clock are read from the system; bandwidths, matmul
FLOP/s and the time per element of the ops the cost model prices are measured by
``torch_hetero.calibration`` (cached on disk), handed in by the package (``use_calibration``).
What is neither read nor measured is an estimate and listed in ``assumed``.  Built once per
process."""
from __future__ import annotations

import functools
import os
import platform

import torch

from ..errors import ProfileError
from .loader import from_table
from .profile import DeviceProfile

CPUINFO = "/proc/cpuinfo"
CACHES = "/sys/devices/system/cpu/cpu0/cache"
MEMINFO = "/proc/meminfo"
MAX_FREQ = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
CGROUP_MEMORY = "/sys/fs/cgroup/memory.max"

# Estimates for what is neither detected nor measured.
WATTS_PER_CORE = 6.0       # a server socket's share: Xeon 8480+ is 350 W for 56 cores
DEFAULT_CLOCK_GHZ = 2.0
DEFAULT_L2_BYTES = 2**20
DEFAULT_LLC_BYTES = 32 * 2**20
AMX_BF16_SHAPE = [16, 16, 32]  # C[16x16 fp32] += A[16x32 bf16] · B[32x16]


# Measuring the host runs C++ loops shaped like generated kernels (codegen, runtime): a layer
# above this one, so the front-end hands the measurement in (torch_hetero/__init__.py).
_calibration = None


def use_calibration(load) -> None:
    """Hand in ``load(cpu_model, cores, bf16_matrix, l2_bytes, llc_bytes)``: this host's
    calibration record (``torch_hetero.calibration.calibrate.load``), measured or cached."""
    global _calibration
    _calibration = load
    host_profile.cache_clear()


@functools.cache
def host_profile() -> DeviceProfile:
    return from_table(host_table(), "cpu (this host)")


def host_table() -> dict:
    """The host as a profile table in the TOML layout (human units)."""
    info, model, cores, flags = _identity()
    simd, isa = _simd(flags)
    amx = "amx_bf16" in flags
    assumed = ["tdp_w"]
    clock = _clock_ghz(info)
    if clock is None:
        clock = DEFAULT_CLOCK_GHZ
        assumed.append("clock_ghz")
    l2, llc, defaulted = _cache_sizes()
    assumed += defaulted
    if _calibration is None:
        raise ProfileError("the cpu profile needs this host's measured figures and no calibration was handed in: "
                           "import torch_hetero (it hands in torch_hetero.calibration), or call "
                           "torch_hetero.device_models.host.use_calibration(load) first")
    measured = _calibration(model, cores, amx, l2, llc)["figures"]
    ops = measured["op_ns"]
    matrix = {"bf16": measured["bf16_tflops"]} if amx else {}
    return {
        "name": "cpu",
        "description": f"this host: {model}, {cores} cores, {isa}",
        "codegen": "cpp",
        "sources": [f"detected: {CPUINFO}, {CACHES}, {MEMINFO}",
                    "measured: torch_hetero.calibration.calibrate (streaming bandwidth per cache level, "
                    "effective LLC size, matmul FLOP/s, ns per element of priced ops)"],
        "assumed": sorted(assumed),
        "compute": {
            # generated kernels run on torch's threads (compiler syncs OpenMP's count to them)
            "units": min(cores, torch.get_num_threads()), "clock_ghz": clock, "simd_width": simd,
            "matrix_shapes": {"bf16": AMX_BF16_SHAPE} if amx else {},
            "peak_tflops_matrix": matrix,
            "peak_tflops_vector": {"fp32": measured["fp32_tflops"]},  # sgemm: the FMA units' best rate
            "vector_op_ns": {op: kinds["vector"] for op, kinds in ops.items() if "vector" in kinds},
            "scalar_op_ns": {op: kinds["scalar"] for op, kinds in ops.items()},
            "vector_inf_op_ns": {op: kinds["vector_inf"] for op, kinds in ops.items() if "vector_inf" in kinds},
        },
        "memory": {
            "local_sram_kib": l2 / 2**10, "local_sram_gbps": measured["local_sram_gbps"],
            "llc_mib": measured["llc_bytes"] / 2**20, "llc_gbps": measured["llc_gbps"],
            "dram_gib": _memory_bytes() / 2**30, "dram_gbps": measured["dram_gbps"],
        },
        "runtime": {"launch_overhead_us": measured["parallel_call_us"], "host_call_us": measured["call_us"],
                    "extern_call_us": measured["aten_call_us"]},
        "libraries": {"channels_last_speedup": measured["channels_last_speedup"],
                      "convolution_efficiency": measured["convolution_efficiency"]},
        "power": {"tdp_w": WATTS_PER_CORE * cores},
        "capabilities": _aten_libraries(),
    }


def _aten_libraries() -> dict:
    """The vendor libraries this torch build's ATen calls on the CPU for the GEMMs,
    convolutions and fused attention the wrapper runs as extern calls (ATen's CPU flash
    attention is built into every CPU build)."""
    return {"blas": ["MKL"] if torch.backends.mkl.is_available() else [],
            "attention": ["ATen CPU flash attention"],
            "convolution": ["oneDNN"] if torch.backends.mkldnn.is_available() else []}


def identity() -> tuple:
    """(CPU model, usable cores, AMX bf16?, ISA name, L2 bytes per core, last-level cache
    bytes): what a calibration of this host measures with and is cached under."""
    _, model, cores, flags = _identity()
    l2, llc, _ = _cache_sizes()
    return model, cores, "amx_bf16" in flags, _simd(flags)[1], l2, llc


def _identity() -> tuple:
    """(/proc/cpuinfo fields, CPU model, usable cores, ISA flags)."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    model = info.get("model name") or info.get("Model") or platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return info, model, cores, flags


def _read(path: str):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cpuinfo() -> dict:
    """The first processor's ``key: value`` lines."""
    info = {}
    for line in (_read(CPUINFO) or "").splitlines():
        if not line.strip() and info:
            break
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip(), value.strip())
    return info


def simd_lanes() -> int:
    """32-bit lanes per vector instruction on this host (the profile's ``simd_width``)."""
    return _simd(_identity()[3])[0]


def _simd(flags: set) -> tuple[int, str]:
    """32-bit lanes per vector instruction, and the ISA's name."""
    if "avx512f" in flags:
        return 16, "AVX-512"
    if "avx2" in flags:
        return 8, "AVX2"
    if "asimd" in flags:
        return 4, "NEON"
    return 4, "128-bit SIMD"


def _clock_ghz(info: dict):
    max_khz = _read(MAX_FREQ)
    if max_khz and max_khz.strip().isdigit():
        return int(max_khz) / 1e6
    try:
        return float(info["cpu MHz"]) / 1e3
    except (KeyError, ValueError):
        return None


def _cache_sizes() -> tuple:
    """(L2 bytes per core, last-level cache bytes, the profile fields left at a default)."""
    l2, llc = _caches()
    defaulted = ["local_sram_bytes"] if l2 is None else []
    return l2 or DEFAULT_L2_BYTES, llc or DEFAULT_LLC_BYTES, defaulted


def _caches() -> tuple:
    """(L2 bytes per logical core, last-level cache bytes), None where unknown."""
    levels = {}
    for index in sorted(os.listdir(CACHES)) if os.path.isdir(CACHES) else []:
        folder = os.path.join(CACHES, index)
        kind, level = _read(os.path.join(folder, "type")), _read(os.path.join(folder, "level"))
        size = _parse_size(_read(os.path.join(folder, "size")))
        if not size or not level or (kind or "").strip() == "Instruction":
            continue
        sharing = _count_cpus(_read(os.path.join(folder, "shared_cpu_list")) or "0")
        levels[int(level)] = (size, sharing)
    l2 = levels[2][0] // levels[2][1] if 2 in levels else None
    last = max((level for level in levels if level >= 2), default=None)
    return l2, levels[last][0] if last is not None else None


def _parse_size(text):
    text = (text or "").strip()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    digits = text[:-1] if scale > 1 else text
    return int(digits) * scale if digits.isdigit() else None


def _count_cpus(cpu_list: str) -> int:
    count = 0
    for part in cpu_list.strip().split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return max(count, 1)


def _memory_bytes() -> int:
    """Physical memory, or the cgroup limit when smaller."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for line in (_read(MEMINFO) or "").splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    limit = (_read(CGROUP_MEMORY) or "").strip()
    return min(total, int(limit)) if limit.isdigit() else total
