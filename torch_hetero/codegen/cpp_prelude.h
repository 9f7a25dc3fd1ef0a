// torch_hetero C++ kernel prelude: plain C ABI, no torch headers (fast to build).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <limits>
#include <omp.h>

// Float math as hetero_<fn>f.  Where glibc's libmvec has vector variants (x86-64, glibc >= 2.35;
// cpp_build detects it and defines HETERO_LIBMVEC) they are the libm functions themselves,
// declared SIMD under another name: loops under `#pragma omp simd` call them 8 or 16 lanes at
// a time with IEEE semantics (no -ffast-math), and g++ cannot merge sin and cos of one value
// into a scalar sincosf.  Elsewhere they are plain inline calls.
#ifdef HETERO_LIBMVEC
#define HETERO_MATH(fn) _Pragma("omp declare simd notinbranch") \
  extern "C" float hetero_##fn##f(float) noexcept __asm__(#fn "f") __attribute__((const));
#else
#define HETERO_MATH(fn) static inline float hetero_##fn##f(float x) { return std::fn(x); }
#endif
HETERO_MATH(exp) HETERO_MATH(exp2) HETERO_MATH(expm1) HETERO_MATH(log) HETERO_MATH(log2)
HETERO_MATH(log10) HETERO_MATH(log1p) HETERO_MATH(sin) HETERO_MATH(cos) HETERO_MATH(tan)
HETERO_MATH(asin) HETERO_MATH(acos) HETERO_MATH(atan) HETERO_MATH(sinh) HETERO_MATH(cosh)
HETERO_MATH(tanh) HETERO_MATH(asinh) HETERO_MATH(acosh) HETERO_MATH(atanh) HETERO_MATH(erf)
HETERO_MATH(erfc)
#undef HETERO_MATH

// float16 / bfloat16 are stored as 16-bit words and computed in float32.
static inline float hetero_h2f(uint16_t h) { _Float16 v; std::memcpy(&v, &h, 2); return (float)v; }
static inline uint16_t hetero_f2h(float f) { _Float16 v = (_Float16)f; uint16_t h; std::memcpy(&h, &v, 2); return h; }
static inline float hetero_b2f(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; std::memcpy(&f, &u, 4); return f; }
static inline uint16_t hetero_f2b(float f) {
  uint32_t u; std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return (uint16_t)(u >> 16);
}
static inline float hetero_round_half(float f) { return hetero_h2f(hetero_f2h(f)); }
static inline float hetero_round_bf16(float f) { return hetero_b2f(hetero_f2b(f)); }

// NaN-propagating max/min, like torch.maximum/minimum and amax/amin.
template <typename T> static inline T hetero_max(T a, T b) { return (a != a || a > b) ? a : b; }
template <typename T> static inline T hetero_min(T a, T b) { return (a != a || a < b) ? a : b; }

// log(exp(a) + exp(b)) without overflow (logcumsumexp); equal infinities stay as they are.
template <typename T> static inline T hetero_logaddexp(T a, T b) {
  T lo = std::isnan(b) ? b : std::min(a, b), hi = std::isnan(b) ? b : std::max(a, b);
  if (lo == hi && std::isinf(lo)) return lo;
  return hi + std::log1p(std::exp(lo - hi));
}

// Python-style integer floor division and remainder (sign of the divisor).
template <typename T> static inline T hetero_floordiv(T a, T b) {
  T q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
template <typename T> static inline T hetero_mod(T a, T b) {
  T r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
static inline double hetero_fmod_py(double a, double b) {
  double r = std::fmod(a, b);
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
template <typename T> static inline T hetero_ipow(T base, T exp) {
  if (exp < 0) return base == 1 ? 1 : (base == -1 ? ((exp & 1) ? -1 : 1) : 0);
  T result = 1;
  while (exp) { if (exp & 1) result *= base; base *= base; exp >>= 1; }
  return result;
}
template <typename T> static inline T hetero_sign(T x) { return x > 0 ? T(1) : (x < 0 ? T(-1) : x); }
template <typename T> static inline T hetero_sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }
static inline float hetero_sigmoid(float x) { return 1.0f / (1.0f + hetero_expf(-x)); }

#ifndef HETERO_SECONDARY_UNIT  // one definition per library (see runtime/cpp_build.units)
extern "C" void hetero_set_num_threads(int n) { omp_set_num_threads(n); }
#endif
