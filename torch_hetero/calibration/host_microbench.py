"""C++ micro-benchmarks of the host, written the way generated kernels are.

The host cost model prices generated C++ loops, so its figures are measured by such loops
rather than through torch (a one-thread ``copy_`` on a small tensor is mostly dispatch
overhead): streaming bandwidth at a working set and thread count; the time per element of
each op the cost model charges — libm calls, the prelude's inline functions, division, select,
plain arithmetic (per op of a chain), a row reduction's step — in a ``#pragma omp simd`` loop
(vector) and in a loop the compiler may not vectorize (scalar); of a vector libm call whose
argument is -inf in half the elements (``vector_inf``: as a causal mask leaves a softmax's exp;
libmvec computes such lanes on a slow path); of a serial reduction chain; and of a kernel's
step in the wrapper (its output's allocation and the call from Python) with and without an
OpenMP parallel region.  Each op's line is
rendered by the C++ ops handler itself, so it calls exactly what a kernel calls; where a call
has no vector variant (no libmvec, ``pow``), the "vector" loop stays scalar and measures so.

The library is built once per host through the build cache (a few seconds of g++ the first
time).  Each function times its own repetitions with ``omp_get_wtime``: no Python in the loop."""
from __future__ import annotations

import ctypes
import functools
import importlib.resources
import math
import time

import torch

from ..codegen.code_handler import Var
from ..codegen.cpp_ops import CppOps
from ..device_models.host_ops import ARITH, INFINITE_PRICED, VECTOR_PRICED
from ..runtime import cpp_build

BINARY = {"pow", "atan2", "truediv", "where"}
# Arguments as a model's: N(0, 1), moved into each function's domain.
DOMAIN = {"log": "positive", "log2": "positive", "log10": "positive", "log1p": "positive",
          "lgamma": "positive", "pow": "positive", "asin": "unit", "acos": "unit", "atanh": "unit",
          "acosh": "above_one", "truediv": "positive"}
OP_ELEMENTS = 4096          # per loop: 16 KiB in, 16 KiB out, within L1 with the second operand
INFINITE_RUN = 32           # vector_inf: runs of this many finite, then as many -inf elements
ARITH_CHAIN = 8             # arith: ops per element, each on the last one's result

# a loop the compiler leaves scalar, as a generated loop it cannot vectorize
_SCALAR = """\
#if defined(__clang__)
#define HETERO_SCALAR_FN
#define HETERO_SCALAR_LOOP _Pragma("clang loop vectorize(disable) interleave(disable)")
#else
#define HETERO_SCALAR_FN __attribute__((optimize("no-tree-vectorize")))
#define HETERO_SCALAR_LOOP
#endif
"""

_STREAM = """\
extern "C" void hetero_bench_stream(float* dst, const float* src, int64_t n, int64_t reps, int threads,
                                    int repeats, double* bytes_per_s) {
  // each thread streams its own share, repeatedly, timing itself: its best window is one it
  // was not descheduled in, so another process on the machine does not halve the figure
  #pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
    double best = INFINITY;
    for (int k = 0; k <= repeats; ++k) {  // the first pass warms up: page faults, caches
      double start = omp_get_wtime();
      for (int64_t r = 0; r < reps; ++r) {
        #pragma omp simd
        for (int64_t i = lo; i < hi; ++i) dst[i] = src[i] * 0.5f;
      }
      double seconds = omp_get_wtime() - start;
      if (k > 0 && seconds < best) best = seconds;
    }
    bytes_per_s[t] = 8.0 * (hi - lo) * reps / best;
  }
}

// a kernel's call from the wrapper with nothing to do: serial, and with an OpenMP loop over
// one iteration per thread (the fork and join every parallel kernel pays)
extern "C" void hetero_bench_call_serial(float* out, const float* a, const float* b) {
  for (int64_t i = 0; i < 1; ++i) out[i] = a[i] + b[i];
}
extern "C" void hetero_bench_call_parallel(float* out, const float* a, const float* b) {
  #pragma omp parallel for
  for (int64_t i = 0; i < omp_get_max_threads(); ++i) out[i] = a[i] + b[i];
}

extern "C" HETERO_SCALAR_FN double hetero_bench_serial(const float* x, float* y, int64_t n, int64_t reps) {
  // an argmax: one dependency chain, as the host's arg/any/all reductions
  double start = omp_get_wtime();
  for (int64_t r = 0; r < reps; ++r) {
    float best = -INFINITY;
    int64_t at = 0;
    HETERO_SCALAR_LOOP
    for (int64_t i = 0; i < n; ++i) {
      if (x[i] > best || x[i] != x[i]) { best = x[i]; at = i; }
    }
    y[r % n] = static_cast<float>(at);
  }
  return omp_get_wtime() - start;
}
"""


_REDUCTION_LOOPS = {  # as codegen.cpp renders a row reduction's loop (_reduction, _extremum)
    "sum_step": ("float acc0 = 0;", "reduction(+:acc0)", "acc0 += x[i];", ""),
    "max_step": ("float acc0 = -INFINITY; uint32_t acc0_nan = 0;", "reduction(max:acc0) reduction(|:acc0_nan)",
                 "acc0_nan |= x[i] != x[i]; acc0 = x[i] > acc0 ? x[i] : acc0;", "if (acc0_nan) acc0 = NAN;"),
}


def _reduction_function(name: str, vector: bool) -> str:
    """A row reduction over ``x`` repeated ``reps`` times, each result stored."""
    init, clauses, body, after = _REDUCTION_LOOPS[name]
    pragma = f"#pragma omp simd {clauses}" if vector else "HETERO_SCALAR_LOOP"
    return _timed(name, vector, f"    {init}\n    {pragma}\n    for (int64_t i = 0; i < n; ++i) {{ {body} }}\n"
                                f"    {after}\n    y[r % n] = acc0;\n")


def _op_function(name: str, vector: bool) -> str:
    """``y[i] = op(x[i](, z[i]))`` repeated ``reps`` times, as a kernel's inner loop renders it."""
    if name in _REDUCTION_LOOPS:
        return _reduction_function(name, vector)
    ops = CppOps()
    x, z = Var("x[i]", torch.float32), Var("z[i]", torch.float32)
    if name == "copy":  # the baseline: a load and a store
        result = x
    elif name == ARITH:  # a dependent chain of ARITH_CHAIN adds and multiplies
        result = x
        for step in range(ARITH_CHAIN):
            result = ops.mul(result, ops.constant(0.999, torch.float32)) if step % 2 else ops.add(result, z)
    elif name == "where":
        result = ops.where(ops.gt(x, z), x, z)
    else:
        result = getattr(ops, name)(*((x, z) if name in BINARY else (x,)))
    body = " ".join(ops.lines) + f" y[i] = {result};"
    pragma = "#pragma omp simd" if vector else "HETERO_SCALAR_LOOP"
    return _timed(name, vector, f"    {pragma}\n    for (int64_t i = 0; i < n; ++i) {{ {body} }}\n")


def _timed(name: str, vector: bool, repeated: str) -> str:
    """The benchmark function ``symbol(name, vector)``: ``repeated`` (statements over ``x``,
    ``z``, ``y`` and ``n``) run ``reps`` times, returning the seconds taken."""
    head = "" if vector else "HETERO_SCALAR_FN "
    return (f'extern "C" {head}double {symbol(name, vector)}(const float* x, const float* z, float* y, '
            f"int64_t n, int64_t reps) {{\n  double start = omp_get_wtime();\n"
            f"  for (int64_t r = 0; r < reps; ++r) {{\n{repeated}  }}\n"
            f"  return omp_get_wtime() - start;\n}}\n")


def symbol(name: str, vector: bool) -> str:
    return f"hetero_bench_{name}_{'vector' if vector else 'scalar'}"


def source() -> list:
    """The library's functions, each a kernel for ``cpp_build.load_library``."""
    return [_STREAM] + [_op_function(name, vector) for name in VECTOR_PRICED + ("copy",) for vector in (True, False)]


@functools.cache
def library() -> ctypes.CDLL:
    prelude = importlib.resources.files("torch_hetero.codegen").joinpath("cpp_prelude.h").read_text()
    lib = cpp_build.load_library(prelude + _SCALAR, source())
    lib.hetero_bench_stream.restype = None
    lib.hetero_bench_stream.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int,
                                        ctypes.c_int, ctypes.c_void_p]
    for kind in ("serial", "parallel"):  # bound as the compiler binds a kernel (compiler.Loadable.load)
        fn = getattr(lib, f"hetero_bench_call_{kind}")
        fn.restype, fn.argtypes = None, [ctypes.c_void_p] * 3
    lib.hetero_bench_serial.restype = ctypes.c_double
    lib.hetero_bench_serial.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
    for name in VECTOR_PRICED + ("copy",):
        for vector in (True, False):
            fn = getattr(lib, symbol(name, vector))
            fn.restype = ctypes.c_double
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
    return lib


def stream_gbps(working_set: int, threads: int, repeats: int, min_bytes: int) -> float:
    """Bandwidth (bytes read + written per second) of ``threads`` threads streaming ``dst =
    src * 0.5`` over ``working_set`` bytes (both arrays), each thread its static share: the sum
    of each thread's best of ``repeats`` timings of at least ``min_bytes`` moved in all."""
    n = max(working_set // 8, 1024 * threads)
    src, dst = torch.ones(n), torch.empty(n)
    reps = max(1, min_bytes // (8 * n))
    rates = torch.zeros(threads, dtype=torch.float64)
    library().hetero_bench_stream(dst.data_ptr(), src.data_ptr(), n, reps, threads, repeats, rates.data_ptr())
    return float(rates.sum()) / 1e9


CALLS_PER_TIMING = 200


def call_us(repeats: int) -> dict:
    """µs per step of the wrapper running a kernel with nothing to do: its output's
    ``empty_strided`` and the call, the arguments' ``data_ptr()`` included (codegen.wrapper):
    ``{"serial": µs, "parallel": µs}``, the latter with an OpenMP loop over torch's threads
    (fork and join); best of ``repeats``."""
    lib = library()
    lib.hetero_set_num_threads(torch.get_num_threads())  # as the wrapper's sync_threads does
    n = torch.get_num_threads()  # an element per thread
    a, b = torch.ones(n), torch.ones(n)
    out = torch.empty_strided((n,), (1,))
    times = {}
    for kind in ("serial", "parallel"):
        fn = getattr(lib, f"hetero_bench_call_{kind}")
        fn(out.data_ptr(), a.data_ptr(), b.data_ptr())  # warm-up: the thread pool
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(CALLS_PER_TIMING):
                out = torch.empty_strided((n,), (1,))
                fn(out.data_ptr(), a.data_ptr(), b.data_ptr())
            best = min(best, time.perf_counter() - start)
        times[kind] = best / CALLS_PER_TIMING * 1e6
    return times


def _argument(domain: str | None, n: int, generator: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, generator=generator)
    if domain == "positive":
        return x.abs() + 0.1
    if domain == "unit":
        return x.clamp(-0.99, 0.99)
    if domain == "above_one":
        return x.abs() + 1.0
    return x


def _half_infinite(x: torch.Tensor) -> torch.Tensor:
    """``x`` with every second run of ``INFINITE_RUN`` elements -inf: half the elements, in
    whole vectors as a mask fills them."""
    runs = x.clone().view(-1, 2, INFINITE_RUN)
    runs[:, 1] = -torch.inf
    return runs.view(-1)


def op_seconds(repeats: int, reps: int) -> dict:
    """Seconds per element of each op above a plain copy's, ``{"exp": {"vector": s,
    "scalar": s, "vector_inf": s}, ...}`` (``vector_inf`` for ``INFINITE_PRICED`` ops: the
    first argument half -inf; ``arith`` per op of a chain; a reduction's step with its load),
    one thread, data in L1, best of ``repeats``; plus
    ``serial_combine``: per element of a serial reduction chain."""
    lib = library()
    generator = torch.Generator().manual_seed(0)
    n, elements = OP_ELEMENTS, OP_ELEMENTS * reps
    y = torch.empty(n)

    def seconds(fn, x, z):
        fn(x.data_ptr(), z.data_ptr(), y.data_ptr(), n, 1)
        return min(fn(x.data_ptr(), z.data_ptr(), y.data_ptr(), n, reps) for _ in range(repeats)) / elements

    normal = _argument(None, n, generator)
    raw, infinite = {}, {}
    for name in ("copy",) + VECTOR_PRICED:
        x = _argument(DOMAIN.get(name), n, generator)
        z = _argument(DOMAIN.get(name), n, generator)
        raw[name] = {kind: seconds(getattr(lib, symbol(name, kind == "vector")), x, z) for kind in ("vector", "scalar")}
        if name in INFINITE_PRICED:
            infinite[name] = seconds(getattr(lib, symbol(name, True)), _half_infinite(x), z)
    out = {}
    for name in VECTOR_PRICED:
        per = ARITH_CHAIN if name == ARITH else 1
        copy = {"vector": 0.0, "scalar": 0.0} if name in _REDUCTION_LOOPS else raw["copy"]  # a step includes its load
        out[name] = {kind: max(raw[name][kind] - copy[kind], 0.0) / per for kind in ("vector", "scalar")}
        if name in infinite:
            out[name]["vector_inf"] = max(infinite[name] - raw["copy"]["vector"], 0.0)
    lib.hetero_bench_serial(normal.data_ptr(), y.data_ptr(), n, 1)
    serial = min(lib.hetero_bench_serial(normal.data_ptr(), y.data_ptr(), n, reps) for _ in range(repeats))
    out["serial_combine"] = {"scalar": serial / elements}
    return out
