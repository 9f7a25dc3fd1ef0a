// torch_hetero C++ kernel prelude: plain C ABI, no torch headers (fast to build).
#include <cmath>
#include <cstdint>
#include <cstring>
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
HETERO_MATH(tanh) HETERO_MATH(asinh) HETERO_MATH(acosh) HETERO_MATH(atanh) HETERO_MATH(erfc)
#undef HETERO_MATH

// Explicit fused multiply-adds where the hardware has them (-ffp-contract=off stops only the
// compiler's own contractions).
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define HETERO_FMA(a, b, c) std::fma(a, b, c)
#else
#define HETERO_FMA(a, b, c) ((a) * (b) + (c))
#endif

// erf inline, so that loops vectorize it without a call: libmvec's erff made GELU 1.6-2x
// slower than eager's.  |x| < 0.5: its Taylor series to x^13; beyond, 1 - t q(t) exp(-x^2)
// with t = 1 / (1 + 0.47047 |x|) and q fitted (minimax, |error| < 5e-9 on [0.5, 10]).  Measured
// against float64: relative error <= 3.4e-7 on [-10, 10]; NaN and infinities as erff.
static inline float hetero_erf_exp(float x) {  // exp for x <= 0; results below 2^-126 are 0
  float xc = x < -87.0f ? -87.0f : x;
  float n = std::nearbyint(xc * 1.44269504088896341f);
  float r = HETERO_FMA(n, -0.693359375f, xc);  // x - n ln 2, ln 2 split in two parts
  r = HETERO_FMA(n, 2.12194440e-4f, r);
  float p = 1.0f / 5040.0f;
  p = HETERO_FMA(p, r, 1.0f / 720.0f);
  p = HETERO_FMA(p, r, 1.0f / 120.0f);
  p = HETERO_FMA(p, r, 1.0f / 24.0f);
  p = HETERO_FMA(p, r, 1.0f / 6.0f);
  p = HETERO_FMA(p, r, 0.5f);
  p = HETERO_FMA(p, r, 1.0f);
  p = HETERO_FMA(p, r, 1.0f);
  uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;  // 2^n
  float scale; std::memcpy(&scale, &bits, 4);
  return p * scale;
}
static inline float hetero_erff(float x) {
  float ax = std::fabs(x), x2 = x * x;
  float s = HETERO_FMA(0.0001205533298f, x2, -0.0008548327023f);
  s = HETERO_FMA(s, x2, 0.005223977625f);
  s = HETERO_FMA(s, x2, -0.02686617065f);
  s = HETERO_FMA(s, x2, 0.1128379167f);
  s = HETERO_FMA(s, x2, -0.376126389f);
  s = HETERO_FMA(s, x2, 1.128379167f);
  float t = 1.0f / HETERO_FMA(0.47047f, ax, 1.0f);
  float q = HETERO_FMA(-0.0601038344f, t, -0.00187128462f);
  q = HETERO_FMA(q, t, 0.419106321f);
  q = HETERO_FMA(q, t, 0.0633596716f);
  q = HETERO_FMA(q, t, 0.320865358f);
  q = HETERO_FMA(q, t, 0.25857084f);
  float far = std::copysign(HETERO_FMA(-(q * t), hetero_erf_exp(-x2), 1.0f), x);
  return ax < 0.5f ? x * s : far;
}

// GELU and its gradient, x Phi(x) and Phi(x) + x phi(x) with Phi the normal CDF: one Gaussian
// g = e^(-x^2/2) serves both Phi and phi, where the composition from erf and exp computed exp
// twice (gradient 1.8x slower).  Phi from 0.5 erfc(|x|/sqrt2) = 0.5 t q(t) g with
// t = 1 / (1 + 0.3275911 |x|/sqrt2) and q fitted (Lawson minimax on the relative error, 1.1e-7
// on [0, 10]); x^2 is split exactly so that g keeps its relative accuracy in the tails.
// Measured against float64 on [-13, 13] (tests/test_lowerings.py): GELU's relative error
// <= 5e-7, the gradient's <= 6.2e-7 where |gradient| >= 0.25 and absolute <= 2.6e-7 (it crosses
// zero at x = -0.75).  Double computes the formula from std::erf.
static inline float hetero_gauss(float x) {
  float x2 = x * x, lo = HETERO_FMA(x, x, -x2);
  float g = hetero_erf_exp(-0.5f * x2) * HETERO_FMA(-0.5f, lo, 1.0f);
  return x2 < 174.0f ? g : 0.0f;  // below 2^-126, and infinities
}
static inline float hetero_normal_cdf(float x, float g) {
  float t = 1.0f / HETERO_FMA(0.231641888f, std::fabs(x), 1.0f);
  float q = HETERO_FMA(-0.00968064554f, t, -0.0953850225f);
  q = HETERO_FMA(q, t, 0.40461871f);
  q = HETERO_FMA(q, t, -0.302928686f);
  q = HETERO_FMA(q, t, 0.383316129f);
  q = HETERO_FMA(q, t, 0.0549222305f);
  q = HETERO_FMA(q, t, 0.198350891f);
  q = HETERO_FMA(q, t, 0.18179746f);
  q = HETERO_FMA(q, t, 0.184988827f);
  float tail = 0.5f * t * q * g;
  return x < 0.0f ? tail : 1.0f - tail;
}
static inline float hetero_gelu(float x) { return x * hetero_normal_cdf(x, hetero_gauss(x)); }
static inline float hetero_gelu_grad(float x) {
  float g = hetero_gauss(x);
  return HETERO_FMA(x * 0.398942280f, g, hetero_normal_cdf(x, g));
}
static inline double hetero_gelu(double x) { return 0.5 * x * (1.0 + std::erf(x * 0.70710678118654752)); }
static inline double hetero_gelu_grad(double x) {
  return 0.5 * (1.0 + std::erf(x * 0.70710678118654752)) + x * 0.39894228040143268 * std::exp(-0.5 * x * x);
}

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

// 8-bit floats (dtypes.Float8Format) are stored as their byte and converted through float32
// in integer arithmetic, branch-free so that loops of them vectorize: M mantissa bits, B the
// exponent bias, MAXC the largest finite magnitude's byte, OVER what a larger one becomes, NANC
// a NaN's, INF infinity's (-1: none), NZ whether -0 exists.  Rounds to nearest even, as c10.
template <int M, int B, uint32_t MAXC, uint32_t OVER, uint32_t NANC, int NZ>
static inline uint8_t hetero_f2fp8(float f) {
  const uint32_t magic_bits = (uint32_t)(127 - B + 23 - M + 1) << 23;  // its ulp: the least subnormal
  uint32_t u, shifted_bits; float magic, magnitude, shifted;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
  std::memcpy(&magic, &magic_bits, 4); std::memcpy(&magnitude, &a, 4);
  shifted = magnitude + magic;                                     // the FPU rounds the subnormals
  std::memcpy(&shifted_bits, &shifted, 4);
  const uint32_t subnormal = shifted_bits - magic_bits;
  const uint32_t normal = (a - ((uint32_t)(127 - B) << 23) + ((1u << (22 - M)) - 1u) + ((a >> (23 - M)) & 1u)) >> (23 - M);
  uint32_t code = a < ((uint32_t)(128 - B) << 23) ? subnormal : normal;
  code = code > MAXC ? (a > 0x7f800000u ? NANC : OVER) : code;   // one select: g++ 12 vectorizes
  return (uint8_t)(NZ || code != 0 ? code | sign : 0u);              // this, not two in a row
}
template <int M, int B, uint32_t MAXC, int INF, int NZ>
static inline float hetero_fp82f(uint8_t c) {
  const uint32_t sign = (uint32_t)(c & 0x80u) << 24, mag = c & 0x7fu;
  const uint32_t normal = sign | ((mag + ((uint32_t)(127 - B) << M)) << (23 - M));
  const uint32_t scale_bits = (uint32_t)(127 + 1 - B - M) << 23;   // 2^(1-B-M): one subnormal step
  uint32_t subnormal; float scale, value;
  std::memcpy(&scale, &scale_bits, 4);
  value = (float)mag * scale;
  std::memcpy(&subnormal, &value, 4);
  uint32_t bits = (mag >> M) == 0 ? (subnormal | sign) : normal;
  bits = mag > MAXC ? (sign | ((int)mag == INF ? 0x7f800000u : 0x7fc00000u)) : bits;
  bits = (!NZ && c == 0x80u) ? 0x7fc00000u : bits;
  float f; std::memcpy(&f, &bits, 4);
  return f;
}
template <int M, int B, uint32_t MAXC, uint32_t OVER, uint32_t NANC, int INF, int NZ>
static inline float hetero_round_fp8(float f) {
  return hetero_fp82f<M, B, MAXC, INF, NZ>(hetero_f2fp8<M, B, MAXC, OVER, NANC, NZ>(f));
}

// NaN-propagating max/min, like torch.maximum/minimum and amax/amin.  Two selects, not one on
// `a != a || a > b`: g++ 12 vectorizes those beside strided loads (max pooling's windows).
template <typename T> static inline T hetero_max(T a, T b) { T m = a > b ? a : b; return a != a ? a : m; }
template <typename T> static inline T hetero_min(T a, T b) { T m = a < b ? a : b; return a != a ? a : m; }
// Index arithmetic (sympy Min/Max in indices, tile bounds): without <algorithm>, which is slow to parse.
static inline int64_t hetero_imin(int64_t a, int64_t b) { return b < a ? b : a; }
static inline int64_t hetero_imax(int64_t a, int64_t b) { return a < b ? b : a; }

// log(exp(a) + exp(b)) without overflow (logcumsumexp); equal infinities stay as they are.
template <typename T> static inline T hetero_logaddexp(T a, T b) {
  T lo = std::isnan(b) ? b : (b < a ? b : a), hi = std::isnan(b) ? b : (a < b ? b : a);
  if (lo == hi && std::isinf(lo)) return lo;
  return hi + std::log1p(std::exp(lo - hi));
}

// Integer division and remainder, truncated (C's, torch.fmod) and floored (Python's, sign of the
// divisor).  T is the type C computes in: int for 8- and 16-bit values (callers narrow the
// result back).  By zero, eager CPU raises "ZeroDivisionError": a kernel cannot, and trapping
// (SIGFPE) would kill the process, so the division records it here and the wrapper raises after
// the kernel (compiler.Loadable).  By -1: the negation with wraparound, which x86 traps on for
// the lowest value (eager dies there).
#ifdef HETERO_SECONDARY_UNIT
extern int hetero_zero_division __attribute__((visibility("hidden")));
#else
int hetero_zero_division __attribute__((visibility("hidden"))) = 0;
extern "C" int hetero_take_zero_division() { return __atomic_exchange_n(&hetero_zero_division, 0, __ATOMIC_RELAXED); }
#endif
template <typename T> static inline T hetero_truncdiv(T a, T b) {
  if (b == 0) { __atomic_store_n(&hetero_zero_division, 1, __ATOMIC_RELAXED); return 0; }
  T q;
  if (b == -1) { __builtin_sub_overflow(T(0), a, &q); return q; }
  return a / b;
}
template <typename T> static inline T hetero_truncmod(T a, T b) {
  if (b == 0) { __atomic_store_n(&hetero_zero_division, 1, __ATOMIC_RELAXED); return 0; }
  return b == -1 ? 0 : a % b;
}
template <typename T> static inline T hetero_floordiv(T a, T b) {
  T q = hetero_truncdiv(a, b);
  return (hetero_truncmod(a, b) != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
template <typename T> static inline T hetero_mod(T a, T b) {
  T r = hetero_truncmod(a, b);
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
