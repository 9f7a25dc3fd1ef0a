"""Loads generated Triton source, natively (a GPU) or under Triton's CPU interpreter, and
compiles it ahead of time for a profile's real target without a GPU.

Triton reads a kernel's source from its file, so each module is written once to the cache
directory (``triton/<sha256>.py``, atomically) and imported from there."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

import torch

from ..errors import HeteroCompileError
from . import cache


def load_module(source: str, interpret: bool):
    """The module for ``source``; with ``interpret``, its kernels run on Triton's interpreter."""
    key = hashlib.sha256(source.encode()).hexdigest()
    name = f"torch_hetero_triton_{key[:24]}_{'interp' if interpret else 'native'}"
    if name in sys.modules:
        return sys.modules[name]
    path = _source_file(key, source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    with _interpret(interpret):
        spec.loader.exec_module(module)
    if interpret:
        _bind_interpreter(module)
    sys.modules[name] = module
    return module


def _source_file(key: str, source: str) -> str:
    """A file holding exactly ``source`` (rewritten if it holds anything else)."""
    for root in (cache.cache_dir, cache.fallback_dir):  # the fallback made only if needed
        folder = os.path.join(root(), "triton")
        path = os.path.join(folder, f"{key}.py")
        try:
            with open(path) as f:
                if f.read() == source:
                    return path
        except OSError:
            pass
        try:
            os.makedirs(folder, exist_ok=True)
            cache.atomic_write(path, source.encode())
            return path
        except OSError:
            continue
    raise HeteroCompileError("no writable directory for generated Triton source: set TORCH_HETERO_CACHE_DIR")


@contextlib.contextmanager
def _interpret(on: bool):
    """``triton.jit`` picks the interpreter when TRITON_INTERPRET is set as it decorates."""
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if on else "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous


# libdevice symbol (without __nv_ and the f suffix) → the torch function computing it
_LIBDEVICE_IN_TORCH = {
    "expm1": torch.expm1, "log10": torch.log10, "log1p": torch.log1p, "tan": torch.tan, "asin": torch.asin,
    "acos": torch.acos, "atan": torch.atan, "sinh": torch.sinh, "cosh": torch.cosh, "tanh": torch.tanh,
    "asinh": torch.asinh, "acosh": torch.acosh, "atanh": torch.atanh, "erfc": torch.erfc, "trunc": torch.trunc,
    "lgamma": torch.lgamma, "nearbyint": torch.round, "atan2": torch.atan2, "copysign": torch.copysign,
    "hypot": torch.hypot, "nextafter": torch.nextafter, "fmod": torch.fmod, "pow": torch.pow,
    "j0": torch.special.bessel_j0, "j1": torch.special.bessel_j1, "y0": torch.special.bessel_y0,
    "y1": torch.special.bessel_y1, "cyl_bessel_i0": torch.special.i0, "cyl_bessel_i1": torch.special.i1,
    "erfinv": torch.erfinv, "erfcx": torch.special.erfcx,
}


class _InterpreterMath:
    """Stands in for libdevice (``hmath``) under Triton's interpreter, whose libdevice calls
    are empty stubs: the same functions, computed by torch on the interpreter's blocks."""

    def __getattr__(self, name):
        fn = _LIBDEVICE_IN_TORCH.get(name)
        if fn is None:
            raise AttributeError(f"libdevice.{name} has no interpreter implementation")

        def call(*args):
            from triton.language import core
            from triton.runtime.interpreter import TensorHandle
            blocks = [a for a in args if isinstance(a, core.tensor)]
            widest = max(blocks, key=lambda b: b.handle.data.size)
            values = [torch.from_numpy(a.handle.data.copy()) if isinstance(a, core.tensor) else torch.tensor(a)
                      for a in args]
            result = fn(*values).numpy().astype(widest.handle.data.dtype)
            return core.tensor(TensorHandle(result, widest.dtype), widest.type)
        return call


def _bind_interpreter(module) -> None:
    """What the interpreter needs instead of some prelude functions: libdevice, exact 16-bit
    dots and bf16 rounding, and the combine functions its fast (numpy) reductions recognize."""
    from triton.language import standard
    module.hmath = _InterpreterMath()
    module._dot = _interpreter_dot
    module._to_bf16 = _interpreter_to_bf16
    module._fp8_operand = _interpreter_fp8_operand(module._from_fp8)
    module._add = standard._sum_combine
    module._maximum = standard._elementwise_max
    module._minimum = standard._elementwise_min


def _interpreter_fp8_operand(from_fp8):
    """The interpreter has no fp8 arithmetic: an operand's bytes are decoded to float32 (the
    module's ``from_fp8``, exact), so its dot multiplies the same values."""
    def operand(bits, fp8, m, b, max_code, inf, nz):
        return from_fp8(bits, m, b, max_code, inf, nz)
    return operand


def _interpreter_dot(a, b, ieee):
    """The interpreter multiplies 16-bit floats as raw integers: widen them first (exact).
    Its int8 dot is exact as it is (int32 sums)."""
    from triton import language as tl
    if a.dtype.is_int():
        return tl.dot(a, b)
    return tl.dot(a.to(tl.float32), b.to(tl.float32))


def compile_ahead(source: str, kernels: list, target: str) -> dict:
    """Compile each TritonKernel of a module ``source`` for ``target`` (no GPU needed):
    kernel name → its KernelResources."""
    module = load_module(source, interpret=False)
    return {k.name: kernel_resources(aot_compile(getattr(module, k.name), k.signature, k.constexprs, target,
                                                 k.launch_options), target)
            for k in kernels}


# registers one thread may hold: NVIDIA's ISA encodes 255; on AMD CDNA3 a lane's VGPRs and
# AGPRs share one 512-entry file (AMD CDNA3 ISA reference, "Vector GPRs")
REGISTER_LIMIT = {"cuda": 255, "hip": 512}


@dataclasses.dataclass(frozen=True)
class KernelResources:
    """What one kernel built ahead of time needs per thread and per block, read from the
    target's binary, not estimated."""
    registers: int       # per thread: NVIDIA's REG, AMD's VGPRs (AGPRs included)
    spill_bytes: int     # per-thread local (NVIDIA, where the code touches it) / scratch (AMD) memory
    shared_bytes: int    # shared memory (LDS) per block
    register_limit: int

    def problems(self, shared_limit: int) -> list:
        """Why this kernel would run badly or not at all on a unit with ``shared_limit`` bytes."""
        found = []
        if self.registers > self.register_limit:
            found.append(f"{self.registers} registers > {self.register_limit}")
        if self.spill_bytes:
            found.append(f"spills {self.spill_bytes} B per thread")
        if self.shared_bytes > shared_limit:
            found.append(f"shared memory {self.shared_bytes} B > {shared_limit} B")
        return found


def kernel_resources(compiled, target: str) -> KernelResources:
    """Registers, spills and shared memory of a kernel ``aot_compile`` built for ``target``:
    NVIDIA's from ``cuobjdump`` on the cubin (Triton's bundled tool): its stack and local
    memory counted as spills where the code stores to or loads from local memory (``STL``/
    ``LDL``), as ptxas may reserve a frame it never touches; AMD's from the amdgcn text's
    kernel metadata."""
    backend = target.split(":")[0]
    if backend == "cuda":
        dump = _cuobjdump(compiled.asm["cubin"])
        line = next(line for line in dump.splitlines() if "REG:" in line)
        fields = {key: int(value) for key, value in re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line)}
        touched = re.search(r"\b(STL|LDL)(\.\w+)*\s", dump)
        registers, spills = fields["REG"], (fields["STACK"] + fields["LOCAL"]) if touched else 0
    else:
        text = compiled.asm["amdgcn"]
        registers, spills = _amdgcn_field(text, ".vgpr_count"), _amdgcn_field(text, ".private_segment_fixed_size")
    return KernelResources(registers, spills, compiled.metadata.shared, REGISTER_LIMIT[backend])


def _cuobjdump(cubin: bytes) -> str:
    """``cuobjdump -res-usage -sass`` of a cubin: its resource line (``REG:128 STACK:0 SHARED:0
    LOCAL:0 ...``) and its SASS."""
    from triton import knobs
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([knobs.nvidia.cuobjdump.path, "-res-usage", "-sass", f.name],
                              capture_output=True, text=True, check=True).stdout


def _amdgcn_field(text: str, key: str) -> int:
    """A number from the amdgcn text's kernel metadata (``  .vgpr_count:     117``)."""
    match = re.search(rf"^\s*{re.escape(key)}:\s*(\d+)", text, re.M)
    if match is None:
        raise HeteroCompileError(f"the amdgcn metadata has no {key}")
    return int(match.group(1))


def _interpreter_to_bf16(x):
    """float32 → bfloat16 rounding to nearest even, as GPUs and eager do (the interpreter
    truncates): round the bits first, so its conversion is exact."""
    from triton import language as tl
    bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return tl.where(x != x, x, rounded.to(tl.float32, bitcast=True)).to(tl.bfloat16)


def aot_compile(kernel, signature: dict, constexprs: dict, target: str, launch_options: tuple = ()):
    """Compile ``kernel`` (a JITFunction) for ``target`` ("cuda:90", "hip:gfx942") without a
    GPU, with the ``launch_options`` it is launched with (``TritonKernel.launch_options``: num_warps,
    num_stages; absent: Triton's defaults).  Returns Triton's compiled kernel
    (``.metadata.shared``: bytes of shared memory)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    backend, arch = target.split(":")
    gpu = GPUTarget("cuda", int(arch), 32) if backend == "cuda" else GPUTarget("hip", arch, 64)
    try:
        return triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs), target=gpu,
                              options=dict(launch_options) or None)
    except Exception as error:  # Triton's errors name the line; keep them, say which target
        raise HeteroCompileError(f"Triton could not compile {kernel.__name__} for {target}: {error}") from error
