// AVX-512 VNNI path: vpdpbusd multiplies 4 u8 activations by 4 s8 weights per 32-bit lane and
// accumulates in int32 without saturation. Register tile: MR token rows × NR panels of 16
// columns (8 × 3 = 24 accumulators + 3 weight registers of the 32).
#include <immintrin.h>
#include <time.h>
#include <cmath>
#include "gelu.h"
#include "panel_source.h"

namespace onnxvitq {
namespace {

// vpdpbusd / vpdpwssd through asm: with the intrinsics, GCC 12 copies every accumulator of an
// array (or of many named chains) through other registers and the stack on each step of a loop.
inline __m512i DotBytes(__m512i acc, __m512i x, __m512i w) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
  return acc;
}

inline __m512i DotPairs(__m512i acc, __m512i x, __m512i b) {
  __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(b));
  return acc;
}

// QuantizeRowsImpl's static-case code of 16 values as int32 lanes, clamp(roundeven(v / s) + z, lo, hi):
// roundeven(v·(1/s)), and the division itself in a vector with an active lane within |t|·2^−21 of a
// half-integer (or NaN/∞), where the product's rounding could differ — the same codes as the division.
struct CodeGrid {
  __m512 scale, reciprocal, zero, lo, hi;
  CodeGrid(float s, float z, float qmin, float qmax)
      : scale(_mm512_set1_ps(s)), reciprocal(_mm512_set1_ps(1.f / s)), zero(_mm512_set1_ps(z)), lo(_mm512_set1_ps(qmin)), hi(_mm512_set1_ps(qmax)) {}
  __m512i Codes(__m512 v, __mmask16 active) const {
    const __m512 magnitude = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    const __m512 t = _mm512_mul_ps(v, reciprocal);
    __m512 c = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 gap = _mm512_sub_ps(_mm512_set1_ps(0.5f), _mm512_and_ps(_mm512_sub_ps(t, c), magnitude));
    if (_mm512_mask_cmp_ps_mask(active, gap, _mm512_mul_ps(_mm512_and_ps(t, magnitude), _mm512_set1_ps(0x1p-21f)), _CMP_NGT_UQ))
      c = _mm512_roundscale_ps(_mm512_div_ps(v, scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_add_ps(c, zero), lo), hi));
  }
};

// QuantizeRowsImpl's rows with AVX-512's masked loads and stores and its reductions: the same
// float operations, so the same scales, zero points and codes (extremes do not depend on the
// order they are taken in; a value near a half-integer is divided again, here per vector instead
// of per row, which gives each value the same code). On the DeiT-Tiny rows (192 values) the shared
// loop's per-row lane arrays, tail and padding loops cost as much as the quantization itself.
void Quantize(const float* x, int64_t k, int64_t m0, int64_t m1, const RowQuantization& q,
              uint8_t* codes, int64_t stride, float* scale, int32_t* zero) {
  const int64_t full = k / 16 * 16;
  const __mmask16 last = static_cast<__mmask16>((1u << (k - full)) - 1);
  const __m512 magnitude = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  const __m512 alpha = _mm512_set1_ps(q.dynamic && q.alpha > 0 ? q.alpha : INFINITY);
  for (int64_t r = m0; r < m1; ++r) {
    const float* row = x + r * k;
    uint8_t* out = codes + r * stride;
    // |x| ≥ α (outliers) count as 0, as does a NaN (|NaN| < α is false).
    auto kept = [&](int64_t i, __mmask16 active) {
      const __m512 v = _mm512_maskz_loadu_ps(active, row + i);
      return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_and_ps(v, magnitude), alpha, _CMP_LT_OQ), v);
    };
    float s, zf, lo, hi;
    if (q.dynamic) {
      __m512 top = _mm512_setzero_ps(), bottom = _mm512_setzero_ps();
      for (int64_t i = 0; i < k; i += 16) {
        const __m512 v = kept(i, i < full ? __mmask16(0xFFFF) : last);
        top = _mm512_max_ps(top, v);
        bottom = _mm512_min_ps(bottom, v);
      }
      const float row_max = _mm512_reduce_max_ps(top), row_min = _mm512_reduce_min_ps(bottom);
      const float levels = static_cast<float>(q.levels);
      s = std::max((row_max - row_min) / levels, kMinScale);
      zf = std::min(std::max(__builtin_rintf(-row_min / s), 0.f), levels);
      lo = 0.f;
      hi = levels;
      zero[r] = static_cast<int32_t>(zf);
    } else {
      s = q.scale;
      zf = static_cast<float>(q.zero);
      lo = static_cast<float>(q.qmin);
      hi = static_cast<float>(q.qmax);
      zero[r] = q.zero;
    }
    scale[r] = s;
    const CodeGrid grid(s, zf, lo, hi);
    for (int64_t i = 0; i < k; i += 16) {
      const __mmask16 active = i < full ? __mmask16(0xFFFF) : last;
      const __m512 v = q.dynamic ? kept(i, active) : _mm512_maskz_loadu_ps(active, row + i);
      _mm512_mask_cvtepi32_storeu_epi8(out + i, active, grid.Codes(v, active));
    }
    for (int64_t i = k; i < stride; ++i) out[i] = 0;
  }
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
    _mm512_storeu_si512(out, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
  }
}

template <int MR, int NR>
inline void StoreTile(const QuantizedRows& a, int64_t r0, const __m512i (&acc)[MR][NR], int64_t col0, const Epilogue& e) {
#pragma GCC unroll 4
  for (int j = 0; j < NR; ++j) {
    const int64_t col = col0 + j * kPanel;
    const __m512i sums = _mm512_loadu_si512(e.col_sum + col);
    const __m512 col_scale = _mm512_loadu_ps(e.col_scale + col);
    const __m512 bias = _mm512_loadu_ps(e.bias + col);
    const int64_t valid = e.n - col;
    const __mmask16 mask = valid >= kPanel ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const int64_t r = r0 + i;
      const __m512 t = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], _mm512_mullo_epi32(_mm512_set1_epi32(a.zero[r]), sums)));
      const __m512 y = _mm512_fmadd_ps(t, _mm512_mul_ps(_mm512_set1_ps(a.scale[r]), col_scale), bias);
      _mm512_mask_storeu_ps(e.y + r * e.n + col, mask, y);
    }
  }
}

template <int MR, int NR>
inline void Tile(const QuantizedRows& a, int64_t r0, const int8_t* b, int64_t panel_codes, int64_t groups,
                 int64_t col0, const Epilogue& e) {
  __m512i acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  const uint8_t* rows = a.codes + r0 * a.stride;
  for (int64_t g = 0; g < groups; ++g) {
    __m512i w[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) w[j] = _mm512_loadu_si512(b + j * panel_codes + g * kBlockCodes);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      int32_t four;
      __builtin_memcpy(&four, rows + i * a.stride + g * kGroup, 4);
      const __m512i x = _mm512_set1_epi32(four);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) acc[i][j] = DotBytes(acc[i][j], x, w[j]);
    }
  }
  StoreTile<MR, NR>(a, r0, acc, col0, e);
}

// Dequantize + bias + store of one row of a 3-panel tile (values passed in registers). It repeats
// StoreTile's arithmetic on purpose: routing both through one helper (also forced inline) made
// the 197×192×768 GEMM go from 0.11 to 0.17 ms under GCC 12 — the main loop's registers change.
inline void StoreRow3(const QuantizedRows& a, int64_t r, __m512i v0, __m512i v1, __m512i v2, int64_t col0, const Epilogue& e) {
  const __m512i v[3] = {v0, v1, v2};
  const __m512i zero = _mm512_set1_epi32(a.zero[r]);
  const __m512 scale = _mm512_set1_ps(a.scale[r]);
  for (int j = 0; j < 3; ++j) {
    const int64_t col = col0 + j * kPanel;
    const int64_t valid = e.n - col;
    if (valid <= 0) break;
    const __mmask16 mask = valid >= kPanel ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
    const __m512 t = _mm512_cvtepi32_ps(_mm512_sub_epi32(v[j], _mm512_mullo_epi32(zero, _mm512_loadu_si512(e.col_sum + col))));
    const __m512 y = _mm512_fmadd_ps(t, _mm512_mul_ps(scale, _mm512_loadu_ps(e.col_scale + col)), _mm512_loadu_ps(e.bias + col));
    _mm512_mask_storeu_ps(e.y + r * e.n + col, mask, y);
  }
}

// The main tile, 8 rows × 3 panels, with named accumulators: GCC keeps an accumulator array of
// the generic Tile in memory (a store per vpdpbusd); named variables stay in registers.
inline void Tile8x3(const QuantizedRows& a, int64_t r0, const int8_t* b, int64_t panel_codes, int64_t groups,
                    int64_t col0, const Epilogue& e) {
  __m512i c00 = _mm512_setzero_si512(), c01 = _mm512_setzero_si512(), c02 = _mm512_setzero_si512();
  __m512i c10 = _mm512_setzero_si512(), c11 = _mm512_setzero_si512(), c12 = _mm512_setzero_si512();
  __m512i c20 = _mm512_setzero_si512(), c21 = _mm512_setzero_si512(), c22 = _mm512_setzero_si512();
  __m512i c30 = _mm512_setzero_si512(), c31 = _mm512_setzero_si512(), c32 = _mm512_setzero_si512();
  __m512i c40 = _mm512_setzero_si512(), c41 = _mm512_setzero_si512(), c42 = _mm512_setzero_si512();
  __m512i c50 = _mm512_setzero_si512(), c51 = _mm512_setzero_si512(), c52 = _mm512_setzero_si512();
  __m512i c60 = _mm512_setzero_si512(), c61 = _mm512_setzero_si512(), c62 = _mm512_setzero_si512();
  __m512i c70 = _mm512_setzero_si512(), c71 = _mm512_setzero_si512(), c72 = _mm512_setzero_si512();
  const uint8_t* rows = a.codes + r0 * a.stride;
  const int64_t st = a.stride;
  for (int64_t g = 0; g < groups; ++g) {
    const int8_t* bg = b + g * kBlockCodes;
    const __m512i w0 = _mm512_loadu_si512(bg), w1 = _mm512_loadu_si512(bg + panel_codes), w2 = _mm512_loadu_si512(bg + 2 * panel_codes);
    const uint8_t* ag = rows + g * kGroup;
    { int32_t f; __builtin_memcpy(&f, ag + 0 * st, 4); const __m512i x = _mm512_set1_epi32(f);
      c00 = _mm512_dpbusd_epi32(c00, x, w0); c01 = _mm512_dpbusd_epi32(c01, x, w1); c02 = _mm512_dpbusd_epi32(c02, x, w2); }
    { int32_t f; __builtin_memcpy(&f, ag + 1 * st, 4); const __m512i x = _mm512_set1_epi32(f);
      c10 = _mm512_dpbusd_epi32(c10, x, w0); c11 = _mm512_dpbusd_epi32(c11, x, w1); c12 = _mm512_dpbusd_epi32(c12, x, w2); }
    { int32_t f; __builtin_memcpy(&f, ag + 2 * st, 4); const __m512i x = _mm512_set1_epi32(f);
      c20 = _mm512_dpbusd_epi32(c20, x, w0); c21 = _mm512_dpbusd_epi32(c21, x, w1); c22 = _mm512_dpbusd_epi32(c22, x, w2); }
    { int32_t f; __builtin_memcpy(&f, ag + 3 * st, 4); const __m512i x = _mm512_set1_epi32(f);
      c30 = _mm512_dpbusd_epi32(c30, x, w0); c31 = _mm512_dpbusd_epi32(c31, x, w1); c32 = _mm512_dpbusd_epi32(c32, x, w2); }
    { int32_t f; __builtin_memcpy(&f, ag + 4 * st, 4); const __m512i x = _mm512_set1_epi32(f);
      c40 = _mm512_dpbusd_epi32(c40, x, w0); c41 = _mm512_dpbusd_epi32(c41, x, w1); c42 = _mm512_dpbusd_epi32(c42, x, w2); }
    { int32_t f; __builtin_memcpy(&f, ag + 5 * st, 4); const __m512i x = _mm512_set1_epi32(f);
      c50 = _mm512_dpbusd_epi32(c50, x, w0); c51 = _mm512_dpbusd_epi32(c51, x, w1); c52 = _mm512_dpbusd_epi32(c52, x, w2); }
    { int32_t f; __builtin_memcpy(&f, ag + 6 * st, 4); const __m512i x = _mm512_set1_epi32(f);
      c60 = _mm512_dpbusd_epi32(c60, x, w0); c61 = _mm512_dpbusd_epi32(c61, x, w1); c62 = _mm512_dpbusd_epi32(c62, x, w2); }
    { int32_t f; __builtin_memcpy(&f, ag + 7 * st, 4); const __m512i x = _mm512_set1_epi32(f);
      c70 = _mm512_dpbusd_epi32(c70, x, w0); c71 = _mm512_dpbusd_epi32(c71, x, w1); c72 = _mm512_dpbusd_epi32(c72, x, w2); }
  }
  StoreRow3(a, r0 + 0, c00, c01, c02, col0, e);
  StoreRow3(a, r0 + 1, c10, c11, c12, col0, e);
  StoreRow3(a, r0 + 2, c20, c21, c22, col0, e);
  StoreRow3(a, r0 + 3, c30, c31, c32, col0, e);
  StoreRow3(a, r0 + 4, c40, c41, c42, col0, e);
  StoreRow3(a, r0 + 5, c50, c51, c52, col0, e);
  StoreRow3(a, r0 + 6, c60, c61, c62, col0, e);
  StoreRow3(a, r0 + 7, c70, c71, c72, col0, e);
}

template <int NR>
inline void Rows(const QuantizedRows& a, int64_t m0, int64_t m1, const int8_t* b, int64_t panel_codes, int64_t groups,
                 int64_t col0, const Epilogue& e) {
  int64_t r = m0;
  for (; r + 8 <= m1; r += 8) {
    if constexpr (NR == 3) Tile8x3(a, r, b, panel_codes, groups, col0, e);
    else Tile<8, NR>(a, r, b, panel_codes, groups, col0, e);
  }
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
  // int4 weights unpacked once, when the kernel was created (Prepare); else per call here.
  const int8_t* panels = w.prepared != nullptr && !w.prepared->narrow.empty()
                             ? w.prepared->narrow.data() + p0 * (w.kp / kGroup) * kBlockCodes
                             : PanelCodes(w, p0, p1, UnpackInt4);
  const int64_t groups = w.kp / kGroup, panel_codes = groups * kBlockCodes;
  int64_t p = p0;
  for (; p + 3 <= p1; p += 3) Rows<3>(a, m0, m1, panels + (p - p0) * panel_codes, panel_codes, groups, p * kPanel, e);
  if (p1 - p == 2) Rows<2>(a, m0, m1, panels + (p - p0) * panel_codes, panel_codes, groups, p * kPanel, e);
  if (p1 - p == 1) Rows<1>(a, m0, m1, panels + (p - p0) * panel_codes, panel_codes, groups, p * kPanel, e);
}

// int4 weights as int8 in the packed block layout, once per kernel: each task of a call would
// otherwise unpack every panel it multiplies again (a 197-row call has 13 tasks).
void Prepare(const PackedWeights& w, bool, PreparedWeights* out) {
  if (w.bits != 4) return;
  out->narrow.resize(static_cast<size_t>(w.np / kPanel * (w.kp / kGroup) * kBlockCodes));
  UnpackInt4(w, 0, w.np / kPanel, out->narrow.data());
}

// The attention products (kernels.h: product) with vpdpwssd, the int16 form of VNNI: one
// instruction multiplies 16 lanes' (k, k+1) pairs and adds both products to the int32 lane,
// without saturation, so the sums are exact as in the AVX2 table (|code| ≤ 255). A k-pair row of
// one 16-column panel of B is exactly one 512-bit register. Tile: R rows × P panels.
template <int R, int P>
inline void ProductTile(const int16_t* a, int64_t kp, const int16_t* bp, int64_t np, int64_t r0, int64_t col0, int64_t n,
                        float scale, float* y) {
  __m512i acc[R][P];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < P; ++j) acc[i][j] = _mm512_setzero_si512();
  const int16_t* panel = bp + 2 * col0;
  const int16_t* rows = a + r0 * kp;
  for (int64_t p = 0; p < kp / 2; ++p) {
    __m512i b[P];
#pragma GCC unroll 2
    for (int j = 0; j < P; ++j) b[j] = _mm512_loadu_si512(panel + p * 2 * np + j * 2 * kPanel);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      int32_t pair;
      __builtin_memcpy(&pair, rows + i * kp + 2 * p, sizeof pair);
      const __m512i x = _mm512_set1_epi32(pair);
#pragma GCC unroll 2
      for (int j = 0; j < P; ++j) acc[i][j] = DotPairs(acc[i][j], x, b[j]);
    }
  }
  const __m512 s = _mm512_set1_ps(scale);
#pragma GCC unroll 2
  for (int j = 0; j < P; ++j) {
    const int64_t col = col0 + j * kPanel, valid = n - col;
    if (valid <= 0) break;
    const __mmask16 mask = valid >= kPanel ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) _mm512_mask_storeu_ps(y + (r0 + i) * n + col, mask, _mm512_mul_ps(_mm512_cvtepi32_ps(acc[i][j]), s));
  }
}

template <int P>
inline void ProductRows(const int16_t* a, int64_t kp, const int16_t* bp, int64_t np, int64_t m0, int64_t m1, int64_t col0, int64_t n,
                        float scale, float* y) {
  int64_t r = m0;
  for (; r + 8 <= m1; r += 8) ProductTile<8, P>(a, kp, bp, np, r, col0, n, scale, y);
  switch (m1 - r) {
    case 7: ProductTile<7, P>(a, kp, bp, np, r, col0, n, scale, y); break;
    case 6: ProductTile<6, P>(a, kp, bp, np, r, col0, n, scale, y); break;
    case 5: ProductTile<5, P>(a, kp, bp, np, r, col0, n, scale, y); break;
    case 4: ProductTile<4, P>(a, kp, bp, np, r, col0, n, scale, y); break;
    case 3: ProductTile<3, P>(a, kp, bp, np, r, col0, n, scale, y); break;
    case 2: ProductTile<2, P>(a, kp, bp, np, r, col0, n, scale, y); break;
    case 1: ProductTile<1, P>(a, kp, bp, np, r, col0, n, scale, y); break;
    default: break;
  }
}

void Product(const int16_t* a, int64_t kp, const int16_t* bp, int64_t np, int64_t m0, int64_t m1, int64_t n, float scale, float* y) {
  int64_t col0 = 0;
  for (; col0 + kPanel < n; col0 += 2 * kPanel) ProductRows<2>(a, kp, bp, np, m0, m1, col0, n, scale, y);
  if (col0 < n) ProductRows<1>(a, kp, bp, np, m0, m1, col0, n, scale, y);
}

typedef int32_t Int32x16 __attribute__((vector_size(64)));
inline __m512 Rcp16(__m512 d) { return _mm512_rcp14_ps(d); }

// 16 values per step: ONNX Runtime's own Gelu is AVX-512 on these CPUs, and with the 8-wide
// AVX2 form the fused epilogue measured slower than the separate op.
void Gelu(float* y, int64_t count) { GeluRow<__m512, Int32x16, Rcp16>(y, count); }

// softmax.h's SoftmaxRow, with AVX-512's masked loads for the tail and its reductions (on the
// attention's 197-wide rows the generic form's per-row lane loops and tail copies cost as much as
// the exponentials), and its last pass quantizing instead of storing: p = e·(1/Σ) as SoftmaxRow
// writes it, then QuantizeRowsImpl's code of p (roundeven(p·(1/s)), divided instead in a vector with a
// value near a half-integer) — the same codes as the two calls, in one pass and one call per row.
void SoftmaxCodes(float* x, int64_t n, const RowQuantization& q, uint8_t* codes, int64_t stride, int32_t* sum) {
  const int64_t full = n / 16 * 16;
  const __mmask16 last = static_cast<__mmask16>((1u << (n - full)) - 1);
  const __m512 tail = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), last, x + full);
  __m512 top = tail;
  for (int64_t i = 0; i < full; i += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(x + i));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(top));
  __m512 sums = ExpNonPositive<__m512, Int32x16>(_mm512_sub_ps(tail, m));
  _mm512_mask_storeu_ps(x + full, last, sums);
  for (int64_t i = 0; i < full; i += 16) {
    const __m512 e = ExpNonPositive<__m512, Int32x16>(_mm512_sub_ps(_mm512_loadu_ps(x + i), m));
    sums = _mm512_add_ps(sums, e);
    _mm512_storeu_ps(x + i, e);
  }
  const __m512 inverse = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(sums));
  const CodeGrid grid(q.scale, static_cast<float>(q.zero), static_cast<float>(q.qmin), static_cast<float>(q.qmax));
  __m512i total = _mm512_setzero_si512();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 active = i < full ? __mmask16(0xFFFF) : last;
    const __m512i c = grid.Codes(_mm512_mul_ps(_mm512_maskz_loadu_ps(active, x + i), inverse), active);
    total = _mm512_mask_add_epi32(total, active, total, c);
    _mm512_mask_cvtepi32_storeu_epi8(codes + i, active, c);
  }
  for (int64_t j = n; j < stride; ++j) codes[j] = 0;
  *sum = _mm512_reduce_add_epi32(total) - static_cast<int32_t>(n) * q.zero;
}

}  // namespace

const Kernels& Avx512VnniKernels() {
  static const Kernels k{"avx512vnni", Quantize, Gemm, Prepare, CentreImpl, Product, LayerNormRowImpl, Gelu, false, nullptr, SoftmaxCodes};
  return k;
}

}  // namespace onnxvitq

namespace onnxvitq {

// Peak of the u8×s8 dot-product unit on this core: 20 independent vpdpbusd chains on registers
// only (no loads), so the figure is the instruction throughput the GEMM is measured against.
// ops = 2 (multiply + add) × 64 MACs per instruction × instructions.
double VnniPeakGops(double seconds) {
  // Named accumulators (not an array) so every chain stays in a register across iterations.
#define OVQ_CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19)
#define OVQ_DECLARE(i) __m512i c##i = _mm512_set1_epi32(i);
#define OVQ_STEP(i) c##i = DotBytes(c##i, a, b);
#define OVQ_SUM(i) sum = _mm512_add_epi32(sum, c##i);
  OVQ_CHAINS(OVQ_DECLARE)
  __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  __asm__ volatile("" : "+v"(a), "+v"(b));
  int64_t instructions = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  double elapsed = 0;
  do {
    for (int r = 0; r < 10000; ++r) { OVQ_CHAINS(OVQ_STEP) }
    instructions += 20 * 10000;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    elapsed = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  } while (elapsed < seconds);
  __m512i sum = _mm512_setzero_si512();
  OVQ_CHAINS(OVQ_SUM)
  volatile int sink = _mm512_reduce_add_epi32(sum);
  (void)sink;
#undef OVQ_CHAINS
#undef OVQ_DECLARE
#undef OVQ_STEP
#undef OVQ_SUM
  return 2.0 * 64.0 * static_cast<double>(instructions) / elapsed / 1e9;
}

}  // namespace onnxvitq
