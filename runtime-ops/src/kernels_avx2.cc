// AVX2 path for CPUs without VNNI. u8×s8 products are summed exactly in int32 with vpmaddwd on
// 16-bit operands (vpmaddubsw would saturate at int16 for 255·(−128)·2, which is what ONNX
// Runtime's own u8×s8 kernels do on these CPUs). The weights are widened to int16 once, when the
// kernel is created (Prepare), in pairs of consecutive k per 32-bit lane; each row tile's
// activation codes are widened the same way per task. The inner step is then one broadcast of a
// row's (k, k+1) pair and one vpmaddwd + vpaddd per 8 columns: 6 rows × 16 columns, 12
// accumulators, 2 weight registers and the broadcast.
//
// Small weight codes (int4, or int8 storage of ≤ 6-bit codes: |code| ≤ 32) take the narrow form:
// with u8 codes ≤ 255, a vpmaddubsw pair sum is at most 2·255·max|code| in magnitude, so G =
// ⌊32767 / (2·255·max|code|)⌋ ≥ 2 of them (8 for int4) add up in int16 exactly, and one vpmaddwd
// by 1 widens them to int32: 32 multiply-adds per vpmaddubsw + vpaddw, plus 2/G instructions,
// against 2 instructions per 16 in the wide form.
#include <immintrin.h>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <time.h>
#include "gelu.h"
#include "softmax.h"
#include "panel_source.h"

namespace onnxvitq {
namespace {

constexpr int kRows = 6;          // register tile: kRows × 16 columns
constexpr int64_t kPairLanes = 32;  // int16 per k-pair of a panel: 16 columns × 2

// clamp(roundeven(v / s) + z, lo, hi) of 8 values as u8 codes, the float operations of
// QuantizeRowsImpl in the same order (division, not a multiply by 1/s), so the codes are the same.
inline void StoreCodes8(__m256 v, __m256 s, __m256 z, __m256 lo, __m256 hi, uint8_t* out) {
  const __m256 q = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(_mm256_round_ps(_mm256_div_ps(v, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z), lo), hi);
  const __m256i i32 = _mm256_cvtps_epi32(q);
  const __m128i u16 = _mm_packus_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packus_epi16(u16, u16));
}

inline float HorizontalMax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return std::max(_mm_cvtss_f32(m), _mm_cvtss_f32(_mm_shuffle_ps(m, m, 1)));
}

inline float HorizontalMin(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  return std::min(_mm_cvtss_f32(m), _mm_cvtss_f32(_mm_shuffle_ps(m, m, 1)));
}

// QuantizeRowsImpl with 8 floats per step. Written when the shared loop was scalar (roundevenf);
// the shared one now vectorises too, but this one is what the AVX2 machine's speed section
// measured, and a one-core comparison on the VNNI machine (forced avx2) was too noisy to show the
// shared one as fast. Values are finite (ONNX Runtime's inputs here are activations); for finite
// values max/min and the outlier mask give exactly the scalar results.
void Quantize(const float* x, int64_t k, int64_t m0, int64_t m1, const RowQuantization& q,
              uint8_t* codes, int64_t stride, float* scale, int32_t* zero) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  for (int64_t r = m0; r < m1; ++r) {
    const float* row = x + r * k;
    uint8_t* out = codes + r * stride;
    float s, z, lo, hi;
    const float alpha = q.alpha > 0 ? q.alpha : INFINITY;
    const __m256 valpha = _mm256_set1_ps(alpha);
    if (!q.dynamic) {
      s = q.scale;
      z = static_cast<float>(q.zero);
      lo = static_cast<float>(q.qmin);
      hi = static_cast<float>(q.qmax);
      scale[r] = s;
      zero[r] = q.zero;
    } else {
      __m256 vmax = _mm256_setzero_ps(), vmin = _mm256_setzero_ps();
      int64_t i = 0;
      for (; i + 8 <= k; i += 8) {
        const __m256 v = _mm256_loadu_ps(row + i);
        const __m256 kept = _mm256_and_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, v), valpha, _CMP_LT_OQ), v);
        vmax = _mm256_max_ps(vmax, kept);
        vmin = _mm256_min_ps(vmin, kept);
      }
      float row_max = HorizontalMax(vmax), row_min = HorizontalMin(vmin);
      for (; i < k; ++i) {
        const float v = std::fabs(row[i]) < alpha ? row[i] : 0.f;
        row_max = std::max(row_max, v);
        row_min = std::min(row_min, v);
      }
      const float levels = static_cast<float>(q.levels);
      s = std::max((row_max - row_min) / levels, kMinScale);
      z = std::min(std::max(__builtin_roundevenf(-row_min / s), 0.f), levels);
      lo = 0.f;
      hi = levels;
      scale[r] = s;
      zero[r] = static_cast<int32_t>(z);
    }
    const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(z), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
      __m256 v = _mm256_loadu_ps(row + i);
      if (q.dynamic) v = _mm256_and_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, v), valpha, _CMP_LT_OQ), v);
      StoreCodes8(v, vs, vz, vlo, vhi, out + i);
    }
    for (; i < k; ++i) {
      const float v = !q.dynamic || std::fabs(row[i]) < alpha ? row[i] : 0.f;
      out[i] = static_cast<uint8_t>(std::min(std::max(__builtin_roundevenf(v / s) + z, lo), hi));
    }
    for (int64_t j = k; j < stride; ++j) out[j] = 0;
  }
}

// Largest k-group count whose int16 sums of u8×s8 pair sums cannot overflow (0: not even 2).
int NarrowGroups(const PackedWeights& w) {
  int max_abs = 0;
  for (int64_t k = 0; k < w.k; ++k)
    for (int64_t n = 0; n < w.n; ++n) max_abs = std::max(max_abs, std::abs(w.Code(k, n)));
  const int groups = max_abs == 0 ? 64 : 32767 / (2 * 255 * max_abs);
  return groups >= 2 ? std::min(groups, 64) : 0;
}

// narrow[(p·kp/4 + g)·64 + 4c + j] = W[4g + j, 16p + c]: the packed int8 block layout, two
// registers per block (columns 0–7 and 8–15), whatever the packed weight_bits.
// wide[(p·kp/2 + j)·32 + 16h + 2c + t] = W[2j + t, 16p + 8h + c]: for panel p and k-pair j, two
// registers (columns 0–7 and 8–15), each 32-bit lane the pair (W[2j], W[2j+1]) of one column.
void Prepare(const PackedWeights& w, bool wide_rows, PreparedWeights* out) {
  const int64_t pairs = w.kp / 2, panels = w.np / kPanel, groups = w.kp / kGroup;
  out->narrow_groups = wide_rows ? 0 : NarrowGroups(w);
  if (out->narrow_groups > 0) {
    out->narrow.assign(static_cast<size_t>(panels * groups * kBlockCodes), 0);
    for (int64_t p = 0; p < panels; ++p)
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t col = 0; col < kPanel; ++col)
          for (int64_t j = 0; j < kGroup; ++j) {
            const int64_t kk = kGroup * g + j, n = p * kPanel + col;
            out->narrow[static_cast<size_t>((p * groups + g) * kBlockCodes + kGroup * col + j)] =
                static_cast<int8_t>(kk < w.k && n < w.n ? w.Code(kk, n) : 0);
          }
    return;
  }
  std::vector<int16_t>* wide = &out->wide;
  wide->assign(static_cast<size_t>(panels * pairs * kPairLanes), 0);
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t j = 0; j < pairs; ++j)
      for (int64_t col = 0; col < kPanel; ++col)
        for (int64_t t = 0; t < 2; ++t) {
          const int64_t kk = 2 * j + t, n = p * kPanel + col;
          const int code = kk < w.k && n < w.n ? w.Code(kk, n) : 0;
          (*wide)[static_cast<size_t>((p * pairs + j) * kPairLanes + (col / 8) * 16 + (col % 8) * 2 + t)] = static_cast<int16_t>(code);
        }
}

// Rows [r0, r0 + rows) of the u8 codes as int16 (stride kp).
inline void WidenRows(const QuantizedRows& a, int64_t r0, int rows, int64_t kp, int16_t* out) {
  for (int i = 0; i < rows; ++i) {
    const uint8_t* src = a.codes + (r0 + i) * a.stride;
    int16_t* dst = out + i * kp;
    int64_t k = 0;
    for (; k + 16 <= kp; k += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k), _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k))));
    for (; k < kp; ++k) dst[k] = src[k];
  }
}

// Dequantize + bias + store of one row's 16 columns (8 per register).
inline void StoreRow(const QuantizedRows& a, int64_t r, __m256i lo, __m256i hi, int64_t col0, const Epilogue& e) {
  const __m256i zero = _mm256_set1_epi32(a.zero[r]);
  const __m256 scale = _mm256_set1_ps(a.scale[r]);
  const __m256i v[2] = {lo, hi};
  for (int h = 0; h < 2; ++h) {
    const int64_t col = col0 + 8 * h;
    if (col >= e.n) break;
    const __m256i sums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.col_sum + col));
    const __m256 t = _mm256_cvtepi32_ps(_mm256_sub_epi32(v[h], _mm256_mullo_epi32(zero, sums)));
    const __m256 y = _mm256_fmadd_ps(t, _mm256_mul_ps(scale, _mm256_loadu_ps(e.col_scale + col)), _mm256_loadu_ps(e.bias + col));
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

// acc + vpmaddwd(x, b) through asm, the multiply and its add kept together: with the intrinsics,
// GCC 12 scheduled a product tile's six broadcasts and twelve multiplies ahead of the adds and
// kept most of the twelve accumulators on the stack (51 GOPS on one core against the GEMM's ~95).
inline __m256i MaddAdd(__m256i acc, __m256i x, __m256i b) {
  __m256i t;
  __asm__("vpmaddwd %3, %2, %1\n\tvpaddd %1, %0, %0" : "+x"(acc), "=&x"(t) : "x"(x), "x"(b));
  return acc;
}

// acc + vpmaddubsw(x, b) in int16 (x unsigned bytes, b signed), the narrow form's step, likewise.
inline __m256i MaddubsAdd(__m256i acc, __m256i x, __m256i b) {
  __m256i t;
  __asm__("vpmaddubsw %3, %2, %1\n\tvpaddw %1, %0, %0" : "+x"(acc), "=&x"(t) : "x"(x), "x"(b));
  return acc;
}

// lo/hi[i] += rows i of a16 (stride a_stride, k-pairs from 0) × one 16-column panel of (k, k+1)
// pairs (pair j at b + j·b_stride): per pair one broadcast per row and one vpmaddwd + vpaddd per
// 8 columns. Both GEMMs run this loop.
template <int R>
__attribute__((always_inline)) inline void MaddPanel(const int16_t* a16, int64_t a_stride, const int16_t* b, int64_t b_stride,
                                                     int64_t pairs, __m256i (&lo)[R], __m256i (&hi)[R]) {
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) lo[i] = hi[i] = _mm256_setzero_si256();
  for (int64_t j = 0; j < pairs; ++j) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j * b_stride));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j * b_stride + 16));
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      int32_t pair;
      __builtin_memcpy(&pair, a16 + i * a_stride + 2 * j, 4);
      const __m256i x = _mm256_set1_epi32(pair);
      lo[i] = MaddAdd(lo[i], x, b0);
      hi[i] = MaddAdd(hi[i], x, b1);
    }
  }
}

template <int MR>
inline void Tile(const int16_t* a16, int64_t kp, const int16_t* b, int64_t pairs, const QuantizedRows& a, int64_t r0,
                 int64_t col0, const Epilogue& e) {
  __m256i lo[MR], hi[MR];
  MaddPanel<MR>(a16, kp, b, kPairLanes, pairs, lo, hi);
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) StoreRow(a, r0 + i, lo[i], hi[i], col0, e);
}

// MR rows × 16 columns of one panel in the narrow form: per k-group one broadcast of a row's 4
// codes and one vpmaddubsw + vpaddw per 8 columns into int16 sums, widened (vpmaddwd by 1) and
// added to the int32 sums every `flush` groups. 12 int16 accumulators, 2 weight registers and
// the broadcast stay in registers; the int32 sums live in L1.
template <int MR>
inline void NarrowTile(const QuantizedRows& a, int64_t r0, const int8_t* b, int64_t groups, int flush, int64_t col0, const Epilogue& e) {
  alignas(32) int32_t acc[MR][kPanel] = {};
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t g0 = 0; g0 < groups; g0 += flush) {
    const int64_t g1 = std::min<int64_t>(groups, g0 + flush);
    __m256i lo[MR], hi[MR];
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) lo[i] = hi[i] = _mm256_setzero_si256();
    for (int64_t g = g0; g < g1; ++g) {
      const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + g * kBlockCodes));
      const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + g * kBlockCodes + 32));
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        int32_t quad;
        __builtin_memcpy(&quad, a.codes + (r0 + i) * a.stride + kGroup * g, 4);
        const __m256i x = _mm256_set1_epi32(quad);
        lo[i] = MaddubsAdd(lo[i], x, b0);
        hi[i] = MaddubsAdd(hi[i], x, b1);
      }
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      __m256i* sums = reinterpret_cast<__m256i*>(acc[i]);
      _mm256_store_si256(sums, _mm256_add_epi32(_mm256_load_si256(sums), _mm256_madd_epi16(lo[i], ones)));
      _mm256_store_si256(sums + 1, _mm256_add_epi32(_mm256_load_si256(sums + 1), _mm256_madd_epi16(hi[i], ones)));
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i)
    StoreRow(a, r0 + i, _mm256_load_si256(reinterpret_cast<const __m256i*>(acc[i])), _mm256_load_si256(reinterpret_cast<const __m256i*>(acc[i] + 8)), col0, e);
}

void NarrowGemm(const QuantizedRows& a, int64_t m0, int64_t m1, const PackedWeights& w, int64_t p0, int64_t p1, const Epilogue& e) {
  const int64_t groups = w.kp / kGroup;
  const int flush = w.prepared->narrow_groups;
  for (int64_t r = m0; r < m1; r += kRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kRows, m1 - r));
    for (int64_t p = p0; p < p1; ++p) {
      const int8_t* b = w.prepared->narrow.data() + p * groups * kBlockCodes;
      const int64_t col0 = p * kPanel;
      switch (rows) {
        case 6: NarrowTile<6>(a, r, b, groups, flush, col0, e); break;
        case 5: NarrowTile<5>(a, r, b, groups, flush, col0, e); break;
        case 4: NarrowTile<4>(a, r, b, groups, flush, col0, e); break;
        case 3: NarrowTile<3>(a, r, b, groups, flush, col0, e); break;
        case 2: NarrowTile<2>(a, r, b, groups, flush, col0, e); break;
        default: NarrowTile<1>(a, r, b, groups, flush, col0, e); break;
      }
    }
  }
}

void Gemm(const QuantizedRows& a, int64_t m0, int64_t m1, const PackedWeights& w, int64_t p0, int64_t p1,
          const Epilogue& e) {
  if (a.wide == nullptr && w.prepared->narrow_groups > 0) return NarrowGemm(a, m0, m1, w, p0, p1, e);
  const int64_t kp = w.kp, pairs = kp / 2;
  thread_local std::vector<int16_t> scratch;
  if (scratch.size() < static_cast<size_t>(kRows * kp)) scratch.resize(static_cast<size_t>(kRows * kp));
  for (int64_t r = m0; r < m1; r += kRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kRows, m1 - r));
    // Rows already int16 (Shift-Log2 values), or the u8 codes widened here.
    const int16_t* a16 = a.wide != nullptr ? a.wide + r * kp : scratch.data();
    if (a.wide == nullptr) WidenRows(a, r, rows, kp, scratch.data());
    for (int64_t p = p0; p < p1; ++p) {
      const int16_t* b = w.prepared->wide.data() + p * pairs * kPairLanes;
      const int64_t col0 = p * kPanel;
      switch (rows) {
        case 6: Tile<6>(a16, kp, b, pairs, a, r, col0, e); break;
        case 5: Tile<5>(a16, kp, b, pairs, a, r, col0, e); break;
        case 4: Tile<4>(a16, kp, b, pairs, a, r, col0, e); break;
        case 3: Tile<3>(a16, kp, b, pairs, a, r, col0, e); break;
        case 2: Tile<2>(a16, kp, b, pairs, a, r, col0, e); break;
        default: Tile<1>(a16, kp, b, pairs, a, r, col0, e); break;
      }
    }
  }
}

// R rows × 16 columns of one product panel over all k-pairs (pairs 2·np int16 apart).
template <int R>
inline void ProductTile(const int16_t* a, int64_t kp, const int16_t* panel, int64_t np, int64_t r0, int64_t col0, int64_t n,
                        float scale, float* y) {
  __m256i lo[R], hi[R];
  MaddPanel<R>(a + r0 * kp, kp, panel, 2 * np, kp / 2, lo, hi);
  const __m256 s = _mm256_set1_ps(scale);
  const int64_t width = std::min<int64_t>(16, n - col0);
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) {
    float* out = y + (r0 + i) * n + col0;
    const __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(lo[i]), s), v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(hi[i]), s);
    if (width == 16) {
      _mm256_storeu_ps(out, v0);
      _mm256_storeu_ps(out + 8, v1);
    } else {
      alignas(32) float tmp[16];
      _mm256_store_ps(tmp, v0);
      _mm256_store_ps(tmp + 8, v1);
      std::memcpy(out, tmp, sizeof(float) * static_cast<size_t>(width));
    }
  }
}

}  // namespace

// The QuantizeRowsImpl static-case float operations, 8 values per step, then − zero as int16
// (CentreImpl's, kept in intrinsics for the same reason as Quantize above).
void Avx2Centre(const float* x, int64_t count, float scale, int zero, int qmin, int qmax, int16_t* out) {
  const __m256 s = _mm256_set1_ps(scale), z = _mm256_set1_ps(static_cast<float>(zero));
  const __m256 lo = _mm256_set1_ps(static_cast<float>(qmin)), hi = _mm256_set1_ps(static_cast<float>(qmax));
  const __m256i zi = _mm256_set1_epi32(zero);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 q = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(_mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x + i), s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z), lo), hi);
    const __m256i c = _mm256_sub_epi32(_mm256_cvtps_epi32(q), zi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm_packs_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1)));
  }
  for (; i < count; ++i)
    out[i] = static_cast<int16_t>(static_cast<int>(std::min(std::max(__builtin_roundevenf(x[i] / scale) + static_cast<float>(zero), static_cast<float>(qmin)), static_cast<float>(qmax))) - zero);
}

void Avx2Product(const int16_t* a, int64_t kp, const int16_t* bp, int64_t np, int64_t m0, int64_t m1, int64_t n, float scale, float* y) {
  for (int64_t col0 = 0; col0 < n; col0 += kPanel) {
    const int16_t* panel = bp + 2 * col0;
    int64_t r = m0;
    for (; r + kRows <= m1; r += kRows) ProductTile<kRows>(a, kp, panel, np, r, col0, n, scale, y);
    switch (m1 - r) {
      case 5: ProductTile<5>(a, kp, panel, np, r, col0, n, scale, y); break;
      case 4: ProductTile<4>(a, kp, panel, np, r, col0, n, scale, y); break;
      case 3: ProductTile<3>(a, kp, panel, np, r, col0, n, scale, y); break;
      case 2: ProductTile<2>(a, kp, panel, np, r, col0, n, scale, y); break;
      case 1: ProductTile<1>(a, kp, panel, np, r, col0, n, scale, y); break;
      default: break;
    }
  }
}

namespace {

typedef int32_t Int32x8 __attribute__((vector_size(32)));
inline __m256 Rcp8(__m256 d) { return _mm256_rcp_ps(d); }

}  // namespace

void Avx2Gelu(float* y, int64_t count) { GeluRow<__m256, Int32x8, Rcp8>(y, count); }
namespace {
void Avx2Softmax(float* x, int64_t n) { SoftmaxRow<__m256, Int32x8>(x, n); }
}  // namespace

// ShiftLog2Value for 8 values: the same division, exponent and mantissa test, clamp, zero code.
void ShiftLog2Rows(const float* x, int64_t k, int64_t m0, int64_t m1, const ShiftLog2& q, int16_t* out, int64_t stride,
                   int32_t* dropped, int32_t* dropped_count) {
  const __m256 shift = _mm256_set1_ps(q.shift), eps = _mm256_set1_ps(q.epsilon), scale = _mm256_set1_ps(q.scale);
  const __m256i sqrt2 = _mm256_set1_epi32(kSqrt2Mantissa), mantissa = _mm256_set1_epi32(0x7FFFFF);
  const __m256i bias = _mm256_set1_epi32(127), qmax = _mm256_set1_epi32(q.qmax), top = _mm256_set1_epi32(q.top);
  const __m256i one = _mm256_set1_epi32(1), centre = _mm256_set1_epi32(1 << (q.top - 1));
  const __m256i tail = _mm256_set1_epi32(q.top + kShiftLog2Tail), zero_code = _mm256_set1_epi32(q.zero_code);
  for (int64_t r = m0; r < m1; ++r) {
    const float* row = x + r * k;
    int16_t* o = out + r * stride;
    int32_t* drops = dropped + r * k;
    int32_t count = 0;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
      const __m256i bits = _mm256_castps_si256(_mm256_div_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_loadu_ps(row + i), shift), eps), scale));
      const __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), bias);  // r > 0: the sign bit is clear
      const __m256i above = _mm256_cmpgt_epi32(_mm256_and_si256(bits, mantissa), sqrt2);  // −1 where m > √2
      __m256i code = _mm256_add_epi32(_mm256_sub_epi32(_mm256_setzero_si256(), e), above);
      code = _mm256_min_epi32(_mm256_max_epi32(code, _mm256_setzero_si256()), qmax);
      // 2^(top − code) for code ≤ top; a variable shift by more than 31 gives 0.
      const __m256i value = _mm256_sllv_epi32(one, _mm256_sub_epi32(top, code));
      // Past top, or the zero code: value 0.
      const __m256i zero = _mm256_cmpeq_epi32(code, zero_code);
      const __m256i above_top = _mm256_andnot_si256(zero, _mm256_cmpgt_epi32(code, top));
      const __m256i kept = _mm256_sub_epi32(_mm256_andnot_si256(_mm256_or_si256(above_top, zero), value), centre);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i), _mm_packs_epi32(_mm256_castsi256_si128(kept), _mm256_extracti128_si256(kept, 1)));
      int mask = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_andnot_si256(_mm256_cmpgt_epi32(code, tail), above_top)));
      while (mask != 0) {
        drops[count++] = static_cast<int32_t>(i + __builtin_ctz(mask));
        mask &= mask - 1;
      }
    }
    for (; i < k; ++i) {
      bool drop = false;
      o[i] = ShiftLog2Value(row[i], q, &drop);
      if (drop) drops[count++] = static_cast<int32_t>(i);
    }
    dropped_count[r] = count;
    for (; i < stride; ++i) o[i] = 0;
  }
}

// Register-only throughput of one core for the instruction an AVX2 int8 GEMM is built on, so
// that a GEMM's GOPS can be read against what the core can do at all. kind 0: vpmaddwd + vpaddd
// (16 exact int16 MACs, this file's GEMM); 1: vpmaddubsw + vpmaddwd + vpaddd (32 u8×s8 MACs with
// int16-saturating pair sums, ONNX Runtime's AVX2 u8×s8 kernel); 2: FP32 vfmadd231ps (8 MACs, the
// FP32 GEMM). GOPS = 2 × MACs per step × steps / seconds. Written in assembly: from intrinsics the
// compiler either computed a loop-invariant product once (timing only the additions) or kept an
// accumulator in memory (timing store-to-load forwarding). Integer: 6 accumulators, each fed by
// the product of its own operand register; FMA: 10 accumulators, enough to cover its latency.
namespace {

// The integer loops: operands ymm6–11 and ymm12 (all ones), accumulators ymm0–5, temporaries ymm13–15.
#define OVQ_INT_PROLOGUE                                                                                   \
  "vpcmpeqw %%ymm12, %%ymm12, %%ymm12\n\tvmovdqa %%ymm12, %%ymm6\n\tvmovdqa %%ymm12, %%ymm7\n\t"     \
  "vmovdqa %%ymm12, %%ymm8\n\tvmovdqa %%ymm12, %%ymm9\n\tvmovdqa %%ymm12, %%ymm10\n\tvmovdqa %%ymm12, %%ymm11\n\t" \
  "mov $10000, %%ecx\n1:\n\t"
#define OVQ_LOOP_END "dec %%ecx\n\tjnz 1b\n\tvzeroupper"
#define OVQ_CLOBBERS "ecx", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
  "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
// One integer chain: accumulator a += product of operand x, through temporary t.
#define OVQ_MADD(x, t, a) "vpmaddwd %%ymm12, %%ymm" #x ", %%ymm" #t "\n\tvpaddd %%ymm" #t ", %%ymm" #a ", %%ymm" #a "\n\t"
#define OVQ_MADDUBS(x, t, a) "vpmaddubsw %%ymm12, %%ymm" #x ", %%ymm" #t "\n\tvpmaddwd %%ymm12, %%ymm" #t ", %%ymm" #t "\n\t" \
  "vpaddd %%ymm" #t ", %%ymm" #a ", %%ymm" #a "\n\t"
#define OVQ_SIX(STEP) STEP(6, 13, 0) STEP(7, 14, 1) STEP(8, 15, 2) STEP(9, 13, 3) STEP(10, 14, 4) STEP(11, 15, 5)

inline void PeakRound(int kind) {
  if (kind == 0) {
    __asm__ volatile(OVQ_INT_PROLOGUE OVQ_SIX(OVQ_MADD) OVQ_LOOP_END ::: OVQ_CLOBBERS);
  } else if (kind == 1) {
    __asm__ volatile(OVQ_INT_PROLOGUE OVQ_SIX(OVQ_MADDUBS) OVQ_LOOP_END ::: OVQ_CLOBBERS);
  } else {
    __asm__ volatile(
        "vxorps %%ymm12, %%ymm12, %%ymm12\n\tvxorps %%ymm13, %%ymm13, %%ymm13\n\t"
        "mov $10000, %%ecx\n1:\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm0\n\tvfmadd231ps %%ymm12, %%ymm13, %%ymm1\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm2\n\tvfmadd231ps %%ymm12, %%ymm13, %%ymm3\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm4\n\tvfmadd231ps %%ymm12, %%ymm13, %%ymm5\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm6\n\tvfmadd231ps %%ymm12, %%ymm13, %%ymm7\n\t"
        "vfmadd231ps %%ymm12, %%ymm13, %%ymm8\n\tvfmadd231ps %%ymm12, %%ymm13, %%ymm9\n\t"
        OVQ_LOOP_END ::: OVQ_CLOBBERS);
  }
}

#undef OVQ_INT_PROLOGUE
#undef OVQ_LOOP_END
#undef OVQ_CLOBBERS
#undef OVQ_MADD
#undef OVQ_MADDUBS
#undef OVQ_SIX

}  // namespace

double Avx2PeakGops(double seconds, int kind) {
  const double steps_per_round = (kind == 2 ? 10 : 6) * 10000.0, macs = kind == 0 ? 16 : kind == 1 ? 32 : 8;
  double rounds = 0, elapsed = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    PeakRound(kind);
    rounds += 1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    elapsed = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  } while (elapsed < seconds);
  return 2.0 * macs * steps_per_round * rounds / elapsed / 1e9;
}

const Kernels& Avx2Kernels() {
  static const Kernels k{"avx2", Quantize, Gemm, Prepare, Avx2Centre, Avx2Product, LayerNormRowImpl, Avx2Gelu, true, ShiftLog2Rows, SoftmaxCodesOf<Avx2Softmax, Quantize>};
  return k;
}

}  // namespace onnxvitq
