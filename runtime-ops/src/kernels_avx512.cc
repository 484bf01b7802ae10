// AVX-512 VNNI path: vpdpbusd multiplies 4 u8 activations by 4 s8 weights per 32-bit lane and
// accumulates in int32 without saturation. Register tile: MR token rows × NR panels of 16
// columns (8 × 3 = 24 accumulators + 3 weight registers of the 32).
#include <immintrin.h>
#include "panel_source.h"

namespace onnxvitq {
namespace {

void Quantize(const float* x, int64_t k, int64_t m0, int64_t m1, const RowQuantization& q,
              uint8_t* codes, int64_t stride, float* scale, int32_t* zero) {
  QuantizeRowsImpl(x, k, m0, m1, q, codes, stride, scale, zero);
}

void UnpackInt4(const PackedWeights& w, int64_t p0, int64_t p1, int8_t* out) {
  const int64_t blocks = (p1 - p0) * (w.kp / kGroup);
  const uint8_t* in = w.data + p0 * w.PanelBytes();
  const __m256i nibble = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
  for (int64_t b = 0; b < blocks; ++b, in += kBlockCodes / 2, out += kBlockCodes) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in));
    // (c ^ 8) − 8 sign-extends a 4-bit code.
    const __m256i lo = _mm256_sub_epi8(_mm256_xor_si256(_mm256_and_si256(v, nibble), eight), eight);
    const __m256i hi = _mm256_sub_epi8(_mm256_xor_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), nibble), eight), eight);
    _mm512_store_si512(out, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
  }
}

template <int MR, int NR>
inline void Tile(const QuantizedRows& a, int64_t r0, const int8_t* b, int64_t panel_codes, int64_t groups,
                 int64_t col0, const Epilogue& e) {
  __m512i acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  const uint8_t* rows = a.codes + r0 * a.stride;
  for (int64_t g = 0; g < groups; ++g) {
    __m512i w[NR];
    for (int j = 0; j < NR; ++j) w[j] = _mm512_loadu_si512(b + j * panel_codes + g * kBlockCodes);
    for (int i = 0; i < MR; ++i) {
      int32_t four;
      __builtin_memcpy(&four, rows + i * a.stride + g * kGroup, 4);
      const __m512i x = _mm512_set1_epi32(four);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], x, w[j]);
    }
  }
  for (int j = 0; j < NR; ++j) {
    const int64_t col = col0 + j * kPanel;
    const __m512i sums = _mm512_loadu_si512(e.col_sum + col);
    const __m512 col_scale = _mm512_loadu_ps(e.col_scale + col);
    const __m512 bias = _mm512_loadu_ps(e.bias + col);
    const int64_t valid = e.n - col;
    const __mmask16 mask = valid >= kPanel ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
    for (int i = 0; i < MR; ++i) {
      const int64_t r = r0 + i;
      const __m512 t = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], _mm512_mullo_epi32(_mm512_set1_epi32(a.zero[r]), sums)));
      const __m512 y = _mm512_fmadd_ps(t, _mm512_mul_ps(_mm512_set1_ps(a.scale[r]), col_scale), bias);
      _mm512_mask_storeu_ps(e.y + r * e.n + col, mask, y);
    }
  }
}

template <int NR>
inline void Rows(const QuantizedRows& a, int64_t m0, int64_t m1, const int8_t* b, int64_t panel_codes, int64_t groups,
                 int64_t col0, const Epilogue& e) {
  int64_t r = m0;
  for (; r + 8 <= m1; r += 8) Tile<8, NR>(a, r, b, panel_codes, groups, col0, e);
  switch (m1 - r) {
    case 7: Tile<7, NR>(a, r, b, panel_codes, groups, col0, e); break;
    case 6: Tile<6, NR>(a, r, b, panel_codes, groups, col0, e); break;
    case 5: Tile<5, NR>(a, r, b, panel_codes, groups, col0, e); break;
    case 4: Tile<4, NR>(a, r, b, panel_codes, groups, col0, e); break;
    case 3: Tile<3, NR>(a, r, b, panel_codes, groups, col0, e); break;
    case 2: Tile<2, NR>(a, r, b, panel_codes, groups, col0, e); break;
    case 1: Tile<1, NR>(a, r, b, panel_codes, groups, col0, e); break;
    default: break;
  }
}

void Gemm(const QuantizedRows& a, int64_t m0, int64_t m1, const PackedWeights& w, int64_t p0, int64_t p1,
          const Epilogue& e) {
  const int8_t* panels = PanelCodes(w, p0, p1, UnpackInt4);
  const int64_t groups = w.kp / kGroup, panel_codes = groups * kBlockCodes;
  int64_t p = p0;
  for (; p + 3 <= p1; p += 3) Rows<3>(a, m0, m1, panels + (p - p0) * panel_codes, panel_codes, groups, p * kPanel, e);
  if (p1 - p == 2) Rows<2>(a, m0, m1, panels + (p - p0) * panel_codes, panel_codes, groups, p * kPanel, e);
  if (p1 - p == 1) Rows<1>(a, m0, m1, panels + (p - p0) * panel_codes, panel_codes, groups, p * kPanel, e);
}

}  // namespace

const Kernels& Avx512VnniKernels() {
  static const Kernels k{"avx512vnni", Quantize, Gemm};
  return k;
}

}  // namespace onnxvitq
