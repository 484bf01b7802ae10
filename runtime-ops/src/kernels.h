// The kernel table shared by the scalar, AVX2 and AVX-512 VNNI builds of the integer GEMM.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace onnxvitq {

// Packed weight layout (written by the C# lowering pass, read here):
// output columns in panels of 16; K in groups of 4 (one VNNI dot product). For panel p and
// group g, a 64-code block holds W[4g + j, 16p + c] at byte 4c + j, i.e. one 512-bit register
// whose 32-bit lane c is the 4 codes that column c multiplies with 4 consecutive activations.
// Padding (k ≥ K or n ≥ N) is code 0. int4: a block is stored in 32 bytes,
// byte i = (code[i] & 15) | (code[i + 32] << 4), codes in [-8, 7].
constexpr int64_t kPanel = 16;
constexpr int64_t kGroup = 4;
constexpr int64_t kBlockCodes = kPanel * kGroup;

inline int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Sizes that come from a model (attributes, initializer and input shapes) are untrusted int64s.
// Every product or rounding of them that sizes a buffer, or bounds a loop that reads or writes
// one, goes through these: they throw std::length_error naming what was being sized instead of
// wrapping, because a wrapped size passes a byte-count check and the kernels then run far past
// the buffer.
inline int64_t CheckedMul(int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    throw std::length_error(std::string(what) + ": " + std::to_string(a) + " × " + std::to_string(b) + " does not fit in int64");
  return r;
}
inline int64_t CheckedRoundUp(int64_t v, int64_t m, const char* what) {
  int64_t r = 0;
  if (v < 0 || __builtin_add_overflow(v, m - 1, &r))
    throw std::length_error(std::string(what) + ": " + std::to_string(v) + " rounded up to a multiple of " + std::to_string(m) +
                            " does not fit in int64");
  return r / m * m;
}

// The deepest exact product: Σ_k code·w over u8 codes (≤ 255) and int8 weights (|w| ≤ 128), and
// the zero-point term zero·Σ_k w, stay within int32 for K ≤ 65536 (255·128·65536 < 2^31).
constexpr int64_t kMaxDepth = 65536;

// A kernel table's own weight layouts, written once per op by Kernels::prepare.
struct PreparedWeights {
  std::vector<int16_t> wide;   // int16 codes in (k, k+1) pairs: the AVX2 table's exact layout
  std::vector<int8_t> narrow;  // int8 codes in the packed int8 block layout (any weight_bits)
  // When the codes are small enough (AVX2 table): how many k-groups of u8×s8 pair sums
  // (vpmaddubsw) are added in int16 before widening, exactly; 0 = the wide layout is used.
  int narrow_groups = 0;
};

struct PackedWeights {
  const uint8_t* data = nullptr;
  int bits = 8;
  int64_t k = 0, n = 0;    // logical
  int64_t kp = 0, np = 0;  // padded to kGroup / kPanel
  // The weights in a kernel table's own layouts when it has them (Kernels::prepare), else null.
  const PreparedWeights* prepared = nullptr;
  int64_t panel_bytes = 0, bytes = 0;

  // The geometry of a k × n weight at 8 or 4 bits (data and prepared left null), every size
  // checked: 1 ≤ k ≤ kMaxDepth, n ≥ 1, and the byte counts, including the int8 form that int4
  // weights are unpacked into (twice their bytes), fit in int64. Throws std::length_error or
  // std::invalid_argument naming the bad value; this is the only way a PackedWeights gets sizes.
  static PackedWeights Layout(int bits, int64_t k, int64_t n) {
    if (bits != 8 && bits != 4) throw std::invalid_argument("weight bits must be 8 or 4, not " + std::to_string(bits));
    if (k < 1 || k > kMaxDepth)
      throw std::length_error("k=" + std::to_string(k) + " must be 1.." + std::to_string(kMaxDepth) + " (deeper int32 sums could overflow)");
    if (n < 1) throw std::length_error("n=" + std::to_string(n) + " must be positive");
    PackedWeights w;
    w.bits = bits;
    w.k = k;
    w.n = n;
    w.kp = CheckedRoundUp(k, kGroup, "packed weight depth");
    w.np = CheckedRoundUp(n, kPanel, "packed weight columns");
    w.panel_bytes = CheckedMul(w.kp / kGroup, w.BlockBytes(), "packed weight panel");
    w.bytes = CheckedMul(w.np / kPanel, w.panel_bytes, "packed weight bytes");
    CheckedMul(w.np / kPanel, CheckedMul(w.kp / kGroup, kBlockCodes, "unpacked weight panel"), "unpacked weight bytes");
    return w;
  }
  int64_t BlockBytes() const { return bits == 8 ? kBlockCodes : kBlockCodes / 2; }
  int64_t PanelBytes() const { return panel_bytes; }
  int64_t Bytes() const { return bytes; }
  // Signed code of W[k, n] (slow path: tests, outlier residual setup).
  int Code(int64_t k, int64_t n) const;
};

// Activation codes, one row per token: u8 codes (stride kp, padded with 0) with the row's
// scale and zero point in the u8 domain: x̂ = scale·(code − zero).
// Or, for the tables with wide_rows, int16 activation values (stride kp) in place of the codes.
struct QuantizedRows {
  const uint8_t* codes = nullptr;
  int64_t stride = 0;
  const float* scale = nullptr;
  const int32_t* zero = nullptr;
  const int16_t* wide = nullptr;
};

// y[r, c] = scale[r]·col_scale[c]·(Σ_k code[r,k]·W[k,c] − zero[r]·col_sum[c]) + bias[c].
struct Epilogue {
  const float* col_scale = nullptr;  // [np], padding 0
  const int32_t* col_sum = nullptr;  // [np]
  const float* bias = nullptr;       // [np], zeros when the layer has none
  float* y = nullptr;
  int64_t n = 0;                     // row stride of y and number of valid columns
};

struct RowQuantization {
  bool dynamic = true;     // per token at run time, else one static scale
  int levels = 255;        // dynamic: codes in [0, levels]
  float alpha = 0;         // dynamic: |x| ≥ alpha are outliers (quantized as 0), 0 = none
  float scale = 1;         // static
  int zero = 0;            // static, u8 domain
  int qmin = 0, qmax = 255;  // static, u8 domain
};

// Shift-Log2 activations (ADFQ-ViT's post-GELU quantizer) as int16 powers of two: with
// x' = max(x − shift, epsilon) and q = clamp(round(−log2(x'/scale)), 0, qmax), the power is
// p = 2^(top − q) for q ≤ top, else 0, so that x̂ = scale·2^(−q) + shift = scale·2^(−top)·p + shift
// up to the dropped levels q > top (each below scale·2^(−top−1)). Stored centred, p − 2^(top−1),
// so that top = 15 (p up to 2^15) still fits int16; the rows' zero point is −2^(top−1).
// Below scale·2^(−top−40) a level is under float precision next to anything it is added to.
constexpr int kShiftLog2Tail = 40;

struct ShiftLog2 {
  float shift = 0, epsilon = 0, scale = 1;
  int qmax = 15, top = 15;
  // The log2 quantizer's (post-Softmax) last code stands for exact zero: codes ≥ zero_code (set
  // qmax = zero_code) are 0, neither a level nor dropped. −1: every code is a level (Shift-Log2).
  int zero_code = -1;
};

struct Kernels {
  const char* name;
  // Quantizes rows [m0, m1) of x (row length k) into codes/scale/zero.
  void (*quantize)(const float* x, int64_t k, int64_t m0, int64_t m1, const RowQuantization& q,
                   uint8_t* codes, int64_t stride, float* scale, int32_t* zero);
  // Output rows [m0, m1) × panels [p0, p1).
  void (*gemm)(const QuantizedRows& a, int64_t m0, int64_t m1, const PackedWeights& w,
               int64_t p0, int64_t p1, const Epilogue& e);
  // Optional: rewrites the packed weights once, when a kernel is created, into the layouts this
  // table's gemm reads through PackedWeights::prepared (null: gemm reads the packed bytes).
  // wide_rows: the op's rows will be int16 values (QuantizedRows::wide), not u8 codes.
  void (*prepare)(const PackedWeights& w, bool wide_rows, PreparedWeights* out);
  // Activation × activation products (the attention matmuls). centre: count floats of x to
  // centred int16 codes, clamp(roundeven(x / scale) + zero, qmin, qmax) − zero (|v| ≤ 255).
  void (*centre)(const float* x, int64_t count, float scale, int zero, int qmin, int qmax, int16_t* out);
  // Rows [m0, m1) of one slice: y[r, c] = scale · Σ_k a[r, k]·b[k, c], summed exactly in int32.
  // a: [M, kp] centred codes (kp even, k ≥ K zero). b: in (k, k+1) pairs — pair p = (k, k+1),
  // column c at bp[p·2·np + 2c + (k & 1)], np a multiple of kPanel, padding zero. y row stride n.
  void (*product)(const int16_t* a, int64_t kp, const int16_t* bp, int64_t np, int64_t m0, int64_t m1, int64_t n, float scale, float* y);
  // One row of LayerNormalization: out = (x − mean) / √(var + epsilon) · gamma + beta (k floats).
  void (*layernorm)(const float* x, int64_t k, const float* gamma, const float* beta, float epsilon, float* out);
  // In place y = GELU(y) = y·½(1 + erf(y/√2)), the exact (erf) GELU of the exported models.
  void (*gelu)(float* y, int64_t count);
  // Whether gemm reads QuantizedRows::wide when it is set (else only u8 codes), and the
  // Shift-Log2 quantizer that writes those rows (null where wide_rows is false).
  bool wide_rows;
  // It also lists, per row, the indices of the dropped levels that still matter in float
  // (top < q ≤ top + kShiftLog2Tail), for the op's float residual: dropped[r·k + j], j < dropped_count[r].
  void (*shift_log2)(const float* x, int64_t k, int64_t m0, int64_t m1, const ShiftLog2& q, int16_t* out, int64_t stride,
                     int32_t* dropped, int32_t* dropped_count);
  // The attention's probabilities as u8 codes: softmax of x (overwritten), then the static
  // quantizer q (exactly quantize's codes of softmax's values), padded with 0 up to stride;
  // *sum = Σ (code − q.zero) over the n codes.
  void (*softmax_codes)(float* x, int64_t n, const RowQuantization& q, uint8_t* codes, int64_t stride, int32_t* sum);
};

// The AVX2 product and centring.
void Avx2Centre(const float* x, int64_t count, float scale, int zero, int qmin, int qmax, int16_t* out);
void Avx2Product(const int16_t* a, int64_t kp, const int16_t* bp, int64_t np, int64_t m0, int64_t m1, int64_t n, float scale, float* y);
// GELU, 8 values per step.
void Avx2Gelu(float* y, int64_t count);

const Kernels& ScalarKernels();
const Kernels& Avx2Kernels();
const Kernels& Avx512VnniKernels();

// The fastest table this CPU supports, or the one ONNXVITQ_ISA names (avx512vnni, avx2,
// scalar). Returns nullptr and sets *error when the variable names a path the CPU lacks.
const Kernels* SelectKernels(const char** error);
// Register-only vpdpbusd throughput of the calling thread's core, GOPS (AVX-512 VNNI CPUs only).
double VnniPeakGops(double seconds);

// Register-only throughput of the calling thread's core, GOPS (AVX2 CPUs only): kind 0 = vpmaddwd
// (the AVX2 GEMM's exact int16 multiply-add), 1 = vpmaddubsw (saturating u8×s8), 2 = FP32 FMA.
double Avx2PeakGops(double seconds, int kind);

// Paths this CPU can run, fastest first, comma-separated.
const char* SupportedPaths();

}  // namespace onnxvitq
