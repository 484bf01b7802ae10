// The exact (erf) GELU of the exported models, y = ½x(1 + erf(x/√2)), written once for every
// vector width with GCC vector extensions: F is a float vector (__m256 or __m512), I the int32
// vector of the same size, Rcp that ISA's approximate reciprocal. The AVX2 and AVX-512 tables
// each instantiate it with their own target flags.
#pragma once
#include <cstdint>
#include <cstring>

namespace onnxvitq {
// Internal linkage on purpose, as in quantize_rows.h: each ISA file compiles its own copy.
// (A C-style cast between vector types of one size reinterprets the bits, in GCC and clang.)
namespace {

// e^v for v ≤ 0 (the only use: erfc's factor): v = n·ln 2 + r with |r| ≤ ½ ln 2 (n rounded by
// the 1.5·2^23 trick, exact for |v·log2 e| < 2^22), e^r by its degree-6 Taylor polynomial
// (truncation < 2e-7 relative), 2^n put in the exponent field. Below −87 the result would be
// subnormal; it is flushed to 0, where erfc is far below float precision next to the 1 or 2 it
// is added to.
template <class F, class I>
inline F ExpNonPositive(F v) {
  const I flushed = v < -87.f;
  v = v < -87.f ? F{} - 87.f : v;
  constexpr float kRound = 12582912.f;  // 1.5·2^23
  const F n = (v * 1.44269504088896341f + kRound) - kRound;
  // ln 2 in two parts so that n·ln2_hi is exact for |n| ≤ 128.
  F r = v - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  F p = F{} + 1.f / 720;
  p = p * r + 1.f / 120;
  p = p * r + 1.f / 24;
  p = p * r + 1.f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const I bits = (__builtin_convertvector(n, I) + 127) << 23;
  return flushed ? F{} : p * (F)bits;
}

// GELU through erfc(z), z = |x|/√2: 1 + erf = 2 − erfc(z) for x ≥ 0 and erfc(z) for x < 0, so
// neither side loses precision to cancellation. erfc(z) = t·e^(−z² + P(t)), t = 1/(1 + z/2), P the
// degree-9 Chebyshev fit of Numerical Recipes' erfcc (relative error < 1.2e-7 for every z ≥ 0).
template <class F, class I, F (*Rcp)(F)>
inline F GeluVector(F x) {
  const I magnitude = (I)x & 0x7FFFFFFF;
  const F z = (F)magnitude * 0.70710678118654752f;
  // t = 1/d by the approximate reciprocal and one Newton step (d ≥ 1, so never 0 or subnormal).
  const F d = z * 0.5f + 1.f;
  const F r0 = Rcp(d);
  const F t = r0 * (2.f - d * r0);
  static constexpr float kP[] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                                 -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f};
  F p = F{} + kP[0];
  for (int i = 1; i < 10; ++i) p = p * t + kP[i];
  const F erfc = t * ExpNonPositive<F, I>(p - z * z);
  const I negative = (I)x < 0;  // the sign bit, −0 included
  const F gate = negative ? erfc : 2.f - erfc;
  return x * 0.5f * gate;
}

// In place over count floats; the tail through a zero-padded vector.
template <class F, class I, F (*Rcp)(F)>
inline void GeluRow(float* y, int64_t count) {
  constexpr int64_t kWidth = sizeof(F) / sizeof(float);
  int64_t i = 0;
  for (; i + kWidth <= count; i += kWidth) {
    F v;
    std::memcpy(&v, y + i, sizeof v);
    v = GeluVector<F, I, Rcp>(v);
    std::memcpy(y + i, &v, sizeof v);
  }
  if (i < count) {
    F v{};
    std::memcpy(&v, y + i, sizeof(float) * static_cast<size_t>(count - i));
    v = GeluVector<F, I, Rcp>(v);
    std::memcpy(y + i, &v, sizeof(float) * static_cast<size_t>(count - i));
  }
}

}  // namespace
}  // namespace onnxvitq
