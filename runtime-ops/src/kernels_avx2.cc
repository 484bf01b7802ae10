// AVX2 path for CPUs without VNNI. u8×s8 products are summed exactly in int32 with vpmaddwd on
// sign/zero-extended 16-bit pairs (vpmaddubsw would saturate at int16 for 255·(−128)·2).
// Pairs are (k0, k2) and (k1, k3) of each 4-code lane, so no byte shuffles are needed.
#include <immintrin.h>
#include "panel_source.h"

namespace onnxvitq {
namespace {

void Quantize(const float* x, int64_t k, int64_t m0, int64_t m1, const RowQuantization& q,
              uint8_t* codes, int64_t stride, float* scale, int32_t* zero) {
  QuantizeRowsImpl(x, k, m0, m1, q, codes, stride, scale, zero);
}

template <int MR>
inline void Tile(const QuantizedRows& a, int64_t r0, const int8_t* b, int64_t groups, int64_t col0, const Epilogue& e) {
  __m256i acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
  const __m256i low_bytes = _mm256_set1_epi32(0x00FF00FF);
  for (int64_t g = 0; g < groups; ++g) {
    __m256i b02[2], b13[2];
    for (int h = 0; h < 2; ++h) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + g * kBlockCodes + h * 32));
      b02[h] = _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 8);
      b13[h] = _mm256_srai_epi16(v, 8);
    }
    for (int i = 0; i < MR; ++i) {
      int32_t four;
      __builtin_memcpy(&four, a.codes + (r0 + i) * a.stride + g * kGroup, 4);
      const __m256i v = _mm256_set1_epi32(four);
      const __m256i a02 = _mm256_and_si256(v, low_bytes);
      const __m256i a13 = _mm256_and_si256(_mm256_srli_epi32(v, 8), low_bytes);
      for (int h = 0; h < 2; ++h)
        acc[i][h] = _mm256_add_epi32(acc[i][h], _mm256_add_epi32(_mm256_madd_epi16(a02, b02[h]), _mm256_madd_epi16(a13, b13[h])));
    }
  }
  for (int i = 0; i < MR; ++i) {
    const int64_t r = r0 + i;
    for (int h = 0; h < 2; ++h) {
      const int64_t col = col0 + 8 * h;
      if (col >= e.n) break;
      const __m256i sums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.col_sum + col));
      const __m256 t = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[i][h], _mm256_mullo_epi32(_mm256_set1_epi32(a.zero[r]), sums)));
      const __m256 s = _mm256_mul_ps(_mm256_set1_ps(a.scale[r]), _mm256_loadu_ps(e.col_scale + col));
      const __m256 y = _mm256_fmadd_ps(t, s, _mm256_loadu_ps(e.bias + col));
      float* out = e.y + r * e.n + col;
      if (e.n - col >= 8) {
        _mm256_storeu_ps(out, y);
      } else {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, y);
        for (int64_t c = 0; c < e.n - col; ++c) out[c] = tmp[c];
      }
    }
  }
}

void Gemm(const QuantizedRows& a, int64_t m0, int64_t m1, const PackedWeights& w, int64_t p0, int64_t p1,
          const Epilogue& e) {
  const int8_t* panels = PanelCodes(w, p0, p1, UnpackInt4Panels);
  const int64_t groups = w.kp / kGroup, panel_codes = groups * kBlockCodes;
  for (int64_t p = p0; p < p1; ++p) {
    const int8_t* b = panels + (p - p0) * panel_codes;
    int64_t r = m0;
    for (; r + 4 <= m1; r += 4) Tile<4>(a, r, b, groups, p * kPanel, e);
    for (; r < m1; ++r) Tile<1>(a, r, b, groups, p * kPanel, e);
  }
}

}  // namespace

const Kernels& Avx2Kernels() {
  static const Kernels k{"avx2", Quantize, Gemm};
  return k;
}

}  // namespace onnxvitq
