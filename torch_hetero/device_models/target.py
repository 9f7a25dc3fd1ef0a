"""Target: what a device's generated code can do, as data the planners and lowerings ask.

A lowering or a planner asks a capability ("can this target sort?"), never the language its
kernels are written in, so a new target is a profile file (plus, for a new language, one
renderer and its row in ``LANGUAGES``).  Nothing here imports the compiler: this is the
profile layer, below every pass."""
from __future__ import annotations

import dataclasses

from ..errors import ProfileError


@dataclasses.dataclass(frozen=True)
class Target:
    language: str               # the kernel language its renderer writes: what picks the renderer
    host_threads: bool          # kernels are loops on the host's cores (OpenMP over outer iterations,
                                # a serial one a plain call, ATen calls from the wrapper, ops priced
                                # as measured); else grids of blocks launched on the device
    cached_local_memory: bool   # local SRAM is a hardware cache that keeps data between kernels
                                # (CPU L2); else per-kernel scratch (shared memory, LDS)
    matmul_epilogue: bool       # matmuls are generated tiled kernels whose output tile takes a
                                # pointwise epilogue; else the GEMM is a library call
    column_reductions: bool     # a column reduction runs alone, reduction loops outside (Group.column)
    scatter_add_16bit: bool     # accumulate into 8/16-bit elements at data-dependent positions
    scatter_multiply: bool      # multiply into elements at data-dependent positions
    sorting: bool               # a stable argsort kernel (ir.Sort)
    running_extremes: bool      # cummax/cummin kernels (a scan of positions)
    online_softmax: bool        # a looped max → sum of exp(x - max) is one pass (running max and
                                # rescaled sum, ``planning.online``); else a pass each
    online_norm: bool           # a looped mean → sum of (x - mean)² is one pass (running sum and
                                # Welford's mean and squared deviations, ``planning.online``)
    special_functions: str      # the library the special functions come from (special_functions)
    float64_statistics: bool    # training batch norm's mean and variance of a float32 input are
                                # accumulated in float64, as the eager kernel it stands in for (ATen's
                                # CPU kernel; a GPU's accumulates in float32): ``batch_norm``
    blas: tuple[str, ...]       # vendor kernel libraries the device has, per op family (GEMM: with
                                # one, a plain matmul calls it; without, generates_gemm)
    attention: tuple[str, ...]  # fused SDPA: with one, SDPA is an extern call reported under the
                                # library's op (ATTENTION_OPS); without, SDPA is traced as its math
    convolution: tuple[str, ...]  # with one, convolution is an extern call; without, generated where
                                  # matmul_epilogue (implicit GEMM, lowering/convolution.py)
    matrix_dtypes: tuple[str, ...]  # dtypes its matrix units take (the profile's matrix_shapes)
    fp8_encodings: tuple[str, ...] = ()  # the torch fp8 dtypes (by name) its "fp8" matrix shape takes

    @property
    def attention_op(self) -> str:
        """The ATen op (no overload) that reaches the device's attention library; "" without one."""
        return ATTENTION_OPS[self.attention[0]] if self.attention else ""

    def matrix_format(self, dtype) -> str | None:
        """The ``matrix_dtypes`` entry its matrix units take a torch ``dtype`` as ("bf16",
        "fp8", …); None where they do not take it (an fp8 encoding they lack included)."""
        name = str(dtype).removeprefix("torch.")
        if name in self.fp8_encodings:
            return "fp8"
        short = {"bfloat16": "bf16", "float16": "fp16", "int8": "int8"}.get(name)
        return short if short in self.matrix_dtypes else None

    @property
    def generates_gemm(self) -> bool:
        """Every matmul is a generated kernel, not only one an epilogue follows: the renderer
        has the template and the device declares no BLAS library to call instead."""
        return self.matmul_epilogue and not self.blas


# What each language's renderer implements.  A profile may turn these off (its device lacks
# them), never on: the renderer would have no code for them.
LANGUAGES = {
    "triton": dict(host_threads=False, matmul_epilogue=True, column_reductions=False, scatter_add_16bit=False,
                   scatter_multiply=False, sorting=True, running_extremes=False, online_softmax=True,
                   online_norm=True, special_functions="libdevice", float64_statistics=False),
    "cpp": dict(host_threads=True, matmul_epilogue=False, column_reductions=True, scatter_add_16bit=True,
                scatter_multiply=True, sorting=True, running_extremes=True, online_softmax=False,
                online_norm=False, special_functions="aten_math", float64_statistics=True),
}
RENDERER_FLAGS = ("matmul_epilogue", "column_reductions", "scatter_add_16bit", "scatter_multiply", "sorting",
                  "running_extremes", "online_softmax", "online_norm")
# What the device has, whatever renders its code: a profile sets these either way.
DEVICE_DEFAULTS = {"triton": dict(cached_local_memory=False), "cpp": dict(cached_local_memory=True)}
DEVICE_FLAGS = ("cached_local_memory",)
LIBRARIES = ("blas", "attention", "convolution")
# The ATen op by which a device reaches each attention library: what a report names for a fused
# SDPA call (the first library a profile lists), whatever kernel the executor at hand runs.
# PyTorch's ROCm flash attention is built on CK (or AOTriton), reached by the same op as CUDA's.
ATTENTION_OPS = {"flash attention": "aten._scaled_dot_product_flash_attention",
                 "cuDNN": "aten._scaled_dot_product_cudnn_attention",
                 "CK": "aten._scaled_dot_product_flash_attention",
                 "ATen CPU flash attention": "aten._scaled_dot_product_flash_attention_for_cpu"}
DECLARABLE = RENDERER_FLAGS + DEVICE_FLAGS + LIBRARIES  # the keys of a profile's [capabilities] table


def make_target(language: str, declared: dict, matrix_dtypes, fp8_encodings=()) -> Target:
    """The language's capabilities, with a profile's ``[capabilities]`` (checked values) applied."""
    for flag in RENDERER_FLAGS:
        if declared.get(flag) and not LANGUAGES[language][flag]:
            raise ProfileError(f"capabilities.{flag} cannot be true with codegen = {language!r}: its renderer "
                               f"has no code for it (leave the key out, or set it to false)")
    unknown = [name for name in declared.get("attention", ()) if name not in ATTENTION_OPS]
    if unknown:
        raise ProfileError(f"capabilities.attention names {unknown}: known attention libraries are "
                           f"{sorted(ATTENTION_OPS)} (target.ATTENTION_OPS: the ATen op that reaches each)")
    values = {**LANGUAGES[language], **DEVICE_DEFAULTS[language], **dict.fromkeys(LIBRARIES, ()), **declared}
    return Target(language=language, matrix_dtypes=tuple(sorted(matrix_dtypes)), fp8_encodings=tuple(fp8_encodings),
                  **values)
