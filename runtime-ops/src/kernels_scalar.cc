// Portable C++ path: the reference the vector paths are tested against, and the fallback on
// CPUs without AVX2.
#include <algorithm>
#include <cmath>
#include "panel_source.h"
#include "softmax.h"

namespace onnxvitq {
namespace {

void Quantize(const float* x, int64_t k, int64_t m0, int64_t m1, const RowQuantization& q,
              uint8_t* codes, int64_t stride, float* scale, int32_t* zero) {
  QuantizeRowsImpl(x, k, m0, m1, q, codes, stride, scale, zero);
}

void Gemm(const QuantizedRows& a, int64_t m0, int64_t m1, const PackedWeights& w, int64_t p0, int64_t p1,
          const Epilogue& e) {
  const int8_t* panels = PanelCodes(w, p0, p1, UnpackInt4Panels);
  const int64_t groups = w.kp / kGroup, panel_codes = groups * kBlockCodes;
  for (int64_t p = p0; p < p1; ++p) {
    const int8_t* b = panels + (p - p0) * panel_codes;
    for (int64_t r = m0; r < m1; ++r) {
      const uint8_t* x = a.codes + r * a.stride;
      const int16_t* xw = a.wide != nullptr ? a.wide + r * a.stride : nullptr;
      int32_t acc[kPanel] = {};
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t c = 0; c < kPanel; ++c)
          for (int64_t j = 0; j < kGroup; ++j) {
            const int32_t v = xw != nullptr ? xw[g * kGroup + j] : x[g * kGroup + j];
            acc[c] += v * b[g * kBlockCodes + c * kGroup + j];
          }
      for (int64_t c = 0; c < kPanel && p * kPanel + c < e.n; ++c) {
        const int64_t col = p * kPanel + c;
        const float t = static_cast<float>(acc[c] - a.zero[r] * e.col_sum[col]);
        e.y[r * e.n + col] = t * (a.scale[r] * e.col_scale[col]) + e.bias[col];
      }
    }
  }
}

void Product(const int16_t* a, int64_t kp, const int16_t* bp, int64_t np, int64_t m0, int64_t m1, int64_t n, float scale, float* y) {
  for (int64_t r = m0; r < m1; ++r)
    for (int64_t c = 0; c < n; ++c) {
      int32_t acc = 0;
      for (int64_t i = 0; i < kp; ++i) acc += static_cast<int32_t>(a[r * kp + i]) * bp[(i / 2) * 2 * np + 2 * c + (i & 1)];
      y[r * n + c] = scale * static_cast<float>(acc);
    }
}

void Gelu(float* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = 0.5f * y[i] * (1.f + std::erf(y[i] * 0.70710678118654752f));
}

void Softmax(float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i] = std::exp(x[i] - m);
  const float inverse = 1.f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inverse;
}

}  // namespace

const Kernels& ScalarKernels() {
  static const Kernels k{"scalar", Quantize, Gemm, nullptr, CentreImpl, Product, LayerNormRowImpl, Gelu, true, ShiftLog2RowsImpl, SoftmaxCodesOf<Softmax, Quantize>};
  return k;
}

}  // namespace onnxvitq
