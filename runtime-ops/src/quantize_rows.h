// Row quantization, written once and compiled into every ISA file (the compiler vectorises it
// for that file's target). Same float operations as the portable graph: x / s, round half to
// even, + z, clamp — so codes agree with ONNX Runtime's QuantizeLinear / Round.
#pragma once
#include <algorithm>
#include <cmath>
#include "kernels.h"

namespace onnxvitq {
// Internal linkage on purpose: every ISA file compiles its own copy with its own target flags;
// shared inline definitions would be merged by the linker and could run AVX-512 code on the
// scalar path.
namespace {

constexpr float kMinScale = 1e-8f;  // UniformQuantizer.MinScale on the C# side

inline void QuantizeRowsImpl(const float* x, int64_t k, int64_t m0, int64_t m1, const RowQuantization& q,
                             uint8_t* codes, int64_t stride, float* scale, int32_t* zero) {
  for (int64_t r = m0; r < m1; ++r) {
    const float* row = x + r * k;
    uint8_t* out = codes + r * stride;
    if (!q.dynamic) {
      const float s = q.scale, z = static_cast<float>(q.zero);
      const float lo = static_cast<float>(q.qmin), hi = static_cast<float>(q.qmax);
      for (int64_t i = 0; i < k; ++i)
        out[i] = static_cast<uint8_t>(std::min(std::max(__builtin_roundevenf(row[i] / s) + z, lo), hi));
      scale[r] = s;
      zero[r] = q.zero;
    } else {
      const float alpha = q.alpha > 0 ? q.alpha : INFINITY;
      float hi = 0, lo = 0;
      for (int64_t i = 0; i < k; ++i) {
        const float v = std::fabs(row[i]) < alpha ? row[i] : 0.f;
        hi = std::max(hi, v);
        lo = std::min(lo, v);
      }
      const float levels = static_cast<float>(q.levels);
      const float s = std::max((hi - lo) / levels, kMinScale);
      const float z = std::min(std::max(__builtin_roundevenf(-lo / s), 0.f), levels);
      for (int64_t i = 0; i < k; ++i) {
        const float v = std::fabs(row[i]) < alpha ? row[i] : 0.f;
        out[i] = static_cast<uint8_t>(std::min(std::max(__builtin_roundevenf(v / s) + z, 0.f), levels));
      }
      scale[r] = s;
      zero[r] = static_cast<int32_t>(z);
    }
    for (int64_t i = k; i < stride; ++i) out[i] = 0;
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
