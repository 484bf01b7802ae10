// Softmax of one row in place, y = e^(x − max) · (1 / Σ e^(x − max)) — ONNX Runtime's own order
// (MLAS multiplies by the reciprocal of the sum too), written once for every vector width with
// GCC vector extensions like gelu.h, whose ExpNonPositive it shares (x − max ≤ 0).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include "gelu.h"
#include "kernels.h"

namespace onnxvitq {
// Internal linkage on purpose, as in quantize_rows.h: each ISA file compiles its own copy.
namespace {

template <class F, class I>
inline void SoftmaxRow(float* x, int64_t n) {
  constexpr int64_t kWidth = sizeof(F) / sizeof(float);
  const int64_t full = n / kWidth * kWidth;
  // The tail as one vector padded with −∞: it adds nothing to the maximum and e^(−∞) = 0 to the sum.
  F tail = F{} - INFINITY;
  std::memcpy(&tail, x + full, sizeof(float) * static_cast<size_t>(n - full));
  F top = tail;
  for (int64_t i = 0; i < full; i += kWidth) {
    F v;
    std::memcpy(&v, x + i, sizeof v);
    top = v > top ? v : top;
  }
  float m = -INFINITY;
  for (int64_t j = 0; j < kWidth; ++j) m = std::max(m, top[j]);
  F sums = ExpNonPositive<F, I>(tail - m);
  tail = sums;
  for (int64_t i = 0; i < full; i += kWidth) {
    F v;
    std::memcpy(&v, x + i, sizeof v);
    v = ExpNonPositive<F, I>(v - m);
    sums += v;
    std::memcpy(x + i, &v, sizeof v);
  }
  float sum = 0;
  for (int64_t j = 0; j < kWidth; ++j) sum += sums[j];
  const float inverse = 1.f / sum;
  for (int64_t i = 0; i < full; i += kWidth) {
    F v;
    std::memcpy(&v, x + i, sizeof v);
    v *= inverse;
    std::memcpy(x + i, &v, sizeof v);
  }
  tail *= inverse;
  std::memcpy(x + full, &tail, sizeof(float) * static_cast<size_t>(n - full));
}

// Kernels::softmax_codes from a table's own softmax and quantize, one pass each.
template <void (*SoftmaxRowFn)(float*, int64_t),
          void (*QuantizeFn)(const float*, int64_t, int64_t, int64_t, const RowQuantization&, uint8_t*, int64_t, float*, int32_t*)>
inline void SoftmaxCodesOf(float* x, int64_t n, const RowQuantization& q, uint8_t* codes, int64_t stride, int32_t* sum) {
  SoftmaxRowFn(x, n);
  float scale;
  int32_t zero;
  QuantizeFn(x, n, 0, 1, q, codes, stride, &scale, &zero);
  int32_t total = 0;
  for (int64_t i = 0; i < n; ++i) total += codes[i];
  *sum = total - static_cast<int32_t>(n) * q.zero;
}

}  // namespace
}  // namespace onnxvitq
