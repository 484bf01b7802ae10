// Row quantization, written once and compiled into every ISA file (the compiler vectorises it
// for that file's target). Same float operations as the portable graph: x / s, round half to
// even, + z, clamp — so codes agree with ONNX Runtime's QuantizeLinear / Round.
// Rounding is rintf, which is round-half-to-even in the default rounding mode (nothing in the
// process changes it): GCC 12 vectorises rintf but not roundevenf, and the scalar loop made
// per-token quantization cost several times the VNNI GEMM after it (one core, 197×768 rows,
// both measured in one busy period: 0.91 ms scalar, 0.16 ms vectorised).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include "kernels.h"

namespace onnxvitq {
// Internal linkage on purpose: every ISA file compiles its own copy with its own target flags;
// shared inline definitions would be merged by the linker and could run AVX-512 code on the
// scalar path.
namespace {

constexpr float kMinScale = 1e-8f;  // UniformQuantizer.MinScale on the C# side

// The codes below are roundeven(x / s), but computed first as roundeven(x·(1/s)): vdivps is the
// slowest instruction of these loops (it bounded the per-token quantization and the attention
// operands' centring). t = x·(1/s) is within |t|·2^−22 of the rounded quotient, so roundeven(t)
// can differ from roundeven(x / s) only when t lies that close to a half-integer; a row with
// such a value (or a NaN or ∞) is quantized again with the division. Both loops vectorise.
inline bool NearHalf(float t, float r) { return !(0.5f - std::fabs(t - r) > std::fabs(t) * 0x1p-21f); }

inline void QuantizeRowsImpl(const float* x, int64_t k, int64_t m0, int64_t m1, const RowQuantization& q,
                             uint8_t* codes, int64_t stride, float* scale, int32_t* zero) {
  for (int64_t r = m0; r < m1; ++r) {
    const float* row = x + r * k;
    uint8_t* out = codes + r * stride;
    if (!q.dynamic) {
      const float s = q.scale, z = static_cast<float>(q.zero);
      const float lo = static_cast<float>(q.qmin), hi = static_cast<float>(q.qmax);
      const float inverse = 1.f / s;
      int near = 0;
      for (int64_t i = 0; i < k; ++i) {
        const float t = row[i] * inverse, c = __builtin_rintf(t);
        near += NearHalf(t, c);
        out[i] = static_cast<uint8_t>(std::min(std::max(c + z, lo), hi));
      }
      if (near)
        for (int64_t i = 0; i < k; ++i)
          out[i] = static_cast<uint8_t>(std::min(std::max(__builtin_rintf(row[i] / s) + z, lo), hi));
      scale[r] = s;
      zero[r] = q.zero;
    } else {
      const float alpha = q.alpha > 0 ? q.alpha : INFINITY;
      // Lane-wise extremes, combined at the end: a single running max is a loop-carried
      // dependence the compiler will not vectorise without -ffast-math. Max and min do not
      // depend on the order they are taken in, so the result is the same.
      constexpr int kLanes = 16;
      float his[kLanes] = {}, los[kLanes] = {};
      int64_t i = 0;
      for (; i + kLanes <= k; i += kLanes)
        for (int j = 0; j < kLanes; ++j) {
          const float v = std::fabs(row[i + j]) < alpha ? row[i + j] : 0.f;
          his[j] = std::max(his[j], v);
          los[j] = std::min(los[j], v);
        }
      for (; i < k; ++i) {
        const float v = std::fabs(row[i]) < alpha ? row[i] : 0.f;
        his[0] = std::max(his[0], v);
        los[0] = std::min(los[0], v);
      }
      float hi = 0, lo = 0;
      for (int j = 0; j < kLanes; ++j) {
        hi = std::max(hi, his[j]);
        lo = std::min(lo, los[j]);
      }
      const float levels = static_cast<float>(q.levels);
      const float s = std::max((hi - lo) / levels, kMinScale);
      const float z = std::min(std::max(__builtin_rintf(-lo / s), 0.f), levels);
      const float inverse = 1.f / s;
      int near = 0;
      for (int64_t i = 0; i < k; ++i) {
        const float v = std::fabs(row[i]) < alpha ? row[i] : 0.f;
        const float t = v * inverse, c = __builtin_rintf(t);
        near += NearHalf(t, c);
        out[i] = static_cast<uint8_t>(std::min(std::max(c + z, 0.f), levels));
      }
      if (near)
        for (int64_t i = 0; i < k; ++i) {
          const float v = std::fabs(row[i]) < alpha ? row[i] : 0.f;
          out[i] = static_cast<uint8_t>(std::min(std::max(__builtin_rintf(v / s) + z, 0.f), levels));
        }
      scale[r] = s;
      zero[r] = static_cast<int32_t>(z);
    }
    for (int64_t i = k; i < stride; ++i) out[i] = 0;
  }
}

// The attention products' operand quantization (kernels.h: centre), QuantizeRowsImpl's static
// float operations then − zero as int16.
inline void CentreImpl(const float* x, int64_t count, float scale, int zero, int qmin, int qmax, int16_t* out) {
  const float z = static_cast<float>(zero), lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  const float inverse = 1.f / scale;
  int near = 0;
  for (int64_t i = 0; i < count; ++i) {
    const float t = x[i] * inverse, c = __builtin_rintf(t);
    near += NearHalf(t, c);
    out[i] = static_cast<int16_t>(static_cast<int>(std::min(std::max(c + z, lo), hi)) - zero);
  }
  if (near)
    for (int64_t i = 0; i < count; ++i)
      out[i] = static_cast<int16_t>(static_cast<int>(std::min(std::max(__builtin_rintf(x[i] / scale) + z, lo), hi)) - zero);
}

// LayerNormalization of one row, (x − mean) · 1/√(E[x²] − mean² + ε) · γ + β in float (the fused
// LayerNorm → linear). Sums are taken in kLanes interleaved partial sums, combined at the end: a
// single running sum would keep the loop scalar (float addition is not reassociated without
// -ffast-math). ONNX Runtime's own kernel sums in its own order too, so neither is "the" exact one.
inline void LayerNormRowImpl(const float* x, int64_t k, const float* gamma, const float* beta, float epsilon, float* out) {
  constexpr int kLanes = 16;
  float sums[kLanes] = {}, squares[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= k; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      sums[j] += x[i + j];
      squares[j] += x[i + j] * x[i + j];
    }
  for (; i < k; ++i) {
    sums[0] += x[i];
    squares[0] += x[i] * x[i];
  }
  // Pairwise, so that each halving step is one vector operation (a sequential sum of the lanes
  // was a chain of 32 dependent additions per row).
  for (int width = kLanes / 2; width >= 1; width /= 2)
    for (int j = 0; j < width; ++j) {
      sums[j] += sums[j + width];
      squares[j] += squares[j + width];
    }
  const float mean = sums[0] / static_cast<float>(k);
  // One division per row: × 1/σ rather than ÷ σ per element (within one rounding of each other).
  const float inverse = 1.f / std::sqrt(squares[0] / static_cast<float>(k) - mean * mean + epsilon);
  for (int64_t t = 0; t < k; ++t) out[t] = (x[t] - mean) * inverse * gamma[t] + beta[t];
}

// round(−log2(r)) for r = m·2^e (m in [1, 2)) is −e, or −e − 1 when m > √2: read from the float's
// exponent and mantissa instead of a logarithm. 0x3504F3 is the mantissa of √2 rounded down
// to float, so "mantissa > it" is m > √2. (Zero and subnormal r give ≥ 126, past every top.)
constexpr int32_t kSqrt2Mantissa = 0x3504F3;

inline int ShiftLog2Code(float x, const ShiftLog2& q) {
  const float r = std::max(x - q.shift, q.epsilon) / q.scale;
  int32_t bits;
  std::memcpy(&bits, &r, sizeof bits);
  const int e = ((bits >> 23) & 255) - 127;
  const int code = -e - ((bits & 0x7FFFFF) > kSqrt2Mantissa ? 1 : 0);
  return std::min(std::max(code, 0), q.qmax);
}

// x̂ of a dropped level (one past top): scale·2^(−q), added in float by the op's residual.
inline float ShiftLog2Level(float x, const ShiftLog2& q) { return std::ldexp(q.scale, -ShiftLog2Code(x, q)); }

// The largest top ≤ 15 (centred powers |p − 2^(top−1)| ≤ 2^(top−1) fit int16) at which no sum of
// k terms with the other operand's codes up to max_code can overflow int32, the uncentred Σ p·v
// included: k·2^top·max_code < 2^31. 0 when even top = 8 would not fit (the op refuses then).
inline int ShiftLog2Top(int64_t k, int max_code) {
  int top = 15;
  while (top > 1 && static_cast<double>(k) * (1 << top) * max_code >= 2147483647.0) --top;
  return top >= 8 ? top : 0;
}

// Element i of a row: its centred int16 value, and whether it is a dropped level for the residual.
inline int16_t ShiftLog2Value(float x, const ShiftLog2& q, bool* dropped) {
  const int code = ShiftLog2Code(x, q);
  const bool zero = code == q.zero_code;
  *dropped = !zero && code > q.top && code <= q.top + kShiftLog2Tail;
  return static_cast<int16_t>((code <= q.top && !zero ? 1 << (q.top - code) : 0) - (1 << (q.top - 1)));
}

inline void ShiftLog2RowsImpl(const float* x, int64_t k, int64_t m0, int64_t m1, const ShiftLog2& q, int16_t* out, int64_t stride,
                              int32_t* dropped, int32_t* dropped_count) {
  for (int64_t r = m0; r < m1; ++r) {
    const float* row = x + r * k;
    int16_t* o = out + r * stride;
    int32_t count = 0;
    for (int64_t i = 0; i < k; ++i) {
      bool drop = false;
      o[i] = ShiftLog2Value(row[i], q, &drop);
      if (drop) dropped[r * k + count++] = static_cast<int32_t>(i);
    }
    dropped_count[r] = count;
    // Padding: centred 0 is −2^(top−1), but its weights are 0, so any value does.
    for (int64_t i = k; i < stride; ++i) o[i] = 0;
  }
}

// Unpacks panels [p0, p1) of int4 weights into the int8 layout (for the paths that multiply int8).
inline void UnpackInt4Panels(const PackedWeights& w, int64_t p0, int64_t p1, int8_t* out) {
  const int64_t blocks = (p1 - p0) * (w.kp / kGroup);
  const uint8_t* in = w.data + p0 * w.PanelBytes();
  for (int64_t b = 0; b < blocks; ++b, in += kBlockCodes / 2, out += kBlockCodes)
    for (int64_t i = 0; i < kBlockCodes / 2; ++i) {
      out[i] = static_cast<int8_t>(((in[i] & 15) ^ 8) - 8);
      out[i + kBlockCodes / 2] = static_cast<int8_t>(((in[i] >> 4) ^ 8) - 8);
    }
}

}  // namespace
}  // namespace onnxvitq
