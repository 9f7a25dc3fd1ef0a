"""DeviceProfile: everything the compiler may ask about a target, as plain numbers.

A profile is data (a TOML file, or the detected host), so a new accelerator is a file, not a
fork of the compiler.  Field values are in the units their names say; ``assumed`` names the
fields whose values are estimates or fill-ins for unpublished figures; ``target`` says what its
generated code can do (``target.py``)."""
from __future__ import annotations

import dataclasses

from .interconnect import Interconnect
from .target import Target


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    target: Target                   # capabilities: what lowerings and planners may use
    triton_target: str | None        # "cuda:90", "cuda:80", "hip:gfx942"; None: no public Triton target
    compute_units: int               # SMs, CUs, PEs or CPU cores
    clock_ghz: float                 # the clock the peaks are quoted at
    simd_width: int                  # 32-bit lanes per vector op (CPU), warp/wavefront size (GPU)
    matrix_shapes: dict[str, tuple[int, int, int]]  # dtype → (m, n, k) of one matrix instruction
    peak_tflops_matrix: dict[str, float]  # dtype → dense TFLOP/s (TOP/s for int8) on matrix units
    peak_tflops_vector: dict[str, float]  # dtype → dense TFLOP/s on vector/SIMT units; has "fp32"
    local_sram_bytes: int            # per unit: shared memory / LDS / PE local memory / CPU L2
    local_sram_gbps: float           # per unit, GB/s
    llc_bytes: int                   # last-level on-chip SRAM (L2, Infinity Cache, CPU L3)
    llc_gbps: float                  # GB/s, whole chip
    dram_bytes: int                  # off-chip memory capacity
    dram_gbps: float                 # off-chip bandwidth, GB/s
    launch_overhead_us: float        # fixed cost per kernel launch, µs (host: a parallel kernel's call)
    host_call_us: float              # host C++: a serial kernel's call (no OpenMP fork/join), µs
    extern_call_us: float            # host C++: an ATen call's from the wrapper (dispatch, output), µs
    gemm_efficiency: float | None    # fraction of the matrix peak its BLAS library's GEMM reaches (a
                                     # Triton target with BLAS: priced against the generated template)
    attention_efficiency: float | None  # the same for its attention library's fused attention (a Triton
                                        # target with one: the estimate of its calls)
    channels_last_speedup: float | None  # its convolution library in channels-last over NCHW (the host:
                                         # measured, calibration; planning.host_library)
    convolution_efficiency: float | None  # the library's NCHW convolutions: roofline time over theirs
    tdp_w: float                     # W
    interconnect: Interconnect | None  # links between devices of this profile (None: not stated)
    vector_op_ns: dict[str, float]   # host C++: op → ns per element on one core in a vectorized loop (host_ops)
    scalar_op_ns: dict[str, float]   # the same in a scalar loop; serial_combine: a serial reduction's step
    vector_inf_op_ns: dict[str, float]  # a vectorized libm call whose argument is half -inf (host_ops.INFINITE_PRICED)
    sources: tuple[str, ...]
    assumed: tuple[str, ...]         # names of fields holding estimates, not published figures

    def __hash__(self):  # the dict fields are not hashable; equal profiles share these
        return hash((self.name, self.target, self.triton_target, self.compute_units, self.clock_ghz))

    @property
    def codegen(self) -> str:
        """The kernel language (the file's ``codegen`` key): which renderer, never what it can do."""
        return self.target.language

    def peak_flops(self, dtype_name: str, matrix: bool) -> float:
        """Dense peak in FLOP/s for ``dtype_name`` ("bf16", "fp32", …) on matrix or vector
        units; a dtype without an entry runs at the fp32 vector peak."""
        table = self.peak_tflops_matrix if matrix else self.peak_tflops_vector
        return table.get(dtype_name, self.peak_tflops_vector["fp32"]) * 1e12

    def ridge_point(self, dtype_name: str = "bf16", matrix: bool = True) -> float:
        """FLOP per byte of DRAM traffic above which a kernel is compute-bound."""
        return self.peak_flops(dtype_name, matrix) / (self.dram_gbps * 1e9)
