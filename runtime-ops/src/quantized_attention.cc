#include "quantized_attention.h"

#include "onnxruntime_cxx_api.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "attributes.h"
#include "kernels.h"
#include "op_status.h"
#include "operand_quantizer.h"

namespace onnxvitq {

// Far past any model's head count; it keeps 3·heads and the per-head sums' indices small.
constexpr int64_t kMaxHeads = 4096;
// The longest sequence and the widest head: Σ (a − z_a)(b − z_b) of u8 codes and the per-row term
// (128 − z_b)·Σ (a − z_a) stay within int32 for up to 32768 terms (255·128·32768 < 2^31).
constexpr int64_t kMaxTerms = 32768;

const OpSchema& QuantizedAttentionSchema() {
  static const OpSchema schema = [] {
    OpSchema s{"QuantizedAttention",
               {AttributeSpec::Int("heads", 1, kMaxHeads), AttributeSpec::String("layout", false, {"tbd"}),
                AttributeSpec::Float("q_divisor", 1.f, FloatDomain::NonZero)}};
    for (const char* p : {"q", "k", "p", "v"})
      for (auto& spec : OperandQuantizer::Specs(p)) s.attributes.push_back(spec);
    return s;
  }();
  return schema;
}

struct QuantizedAttentionKernel;

struct QuantizedAttentionOp : Ort::CustomOpBase<QuantizedAttentionOp, QuantizedAttentionKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const noexcept;
  const char* GetName() const { return "QuantizedAttention"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetInputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

struct QuantizedAttentionKernel {
  std::string node;
  const Kernels* kernels = nullptr;
  int64_t heads = 1;
  float q_divisor = 1;
  OperandQuantizer q, k, p, v;

  QuantizedAttentionKernel(const OrtApi&, const OrtKernelInfo* raw) {
    Ort::ConstKernelInfo info(raw);
    node = info.GetNodeName();
    const char* error = nullptr;
    kernels = SelectKernels(&error);
    if (kernels == nullptr) throw OpError(error);
    const AttributeReader attributes(info, QuantizedAttentionSchema());
    heads = attributes.Int("heads");
    attributes.String("layout");  // "tbd", the only layout so far: checked, nothing to choose
    q_divisor = attributes.Float("q_divisor");
    q = OperandQuantizer::Read(attributes, "q");
    k = OperandQuantizer::Read(attributes, "k");
    p = OperandQuantizer::Read(attributes, "p");
    v = OperandQuantizer::Read(attributes, "v");
  }

  // An operand's quantizer in the u8 domain of the GEMM (kernels.h RowQuantization): codes
  // shifted by −qmin so they start at 0; code − zero_point, the value's integer, is unchanged.
  static RowQuantization U8(const OperandQuantizer& o, float scale) {
    RowQuantization r;
    r.dynamic = false;
    r.scale = scale;
    r.zero = o.zero - o.qmin;
    r.qmin = 0;
    r.qmax = o.qmax - o.qmin;
    return r;
  }

  // One call's buffers, kept by the kernel between calls (a per-call allocation of this size was
  // fresh pages, i.e. page faults, on every call); concurrent calls take separate ones.
  struct Buffers {
    std::vector<uint8_t> codes;                       // [T·B, 3·D] u8 codes of q|k|v (+ slack)
    std::vector<int32_t> query_sums;                  // [T·B·H] Σ (q − z_q) per token and head
    std::vector<uint8_t> keys, values;                // per slice: Kᵀ [d, T] and V [T, d] packed
    std::vector<int32_t> key_sums, value_sums;        // per slice: column sums of the int8 values
    std::vector<PreparedWeights> prepared;            // per slice, keys then values (tables with prepare)
    std::vector<float> ones, zeros;                   // col_scale and bias of both products
    std::vector<uint8_t> flat;                        // d codes of 128: V's tokens past T
  };

  // Both products run on the integer GEMM of the linear layers (Kernels::gemm: u8 codes × int8
  // weights, vpdpbusd on AVX-512 VNNI): Q and the probabilities as the u8 rows, K and V as the int8
  // "weights", their codes less 128 — Σ (a − z_a)(b − z_b) = Σ a·(b − 128) − z_a·Σ (b − 128)
  // + (128 − z_b)·Σ (a − z_a): the first two terms the GEMM's own (col_sum), the last a per-row
  // term added after it. Three parallel passes: every qkv row quantized once (its Q, K and V parts
  // with their quantizers); K and V of each slice (s = b·heads + h) packed from those codes; then
  // per slice and block of query rows, both products with the softmax between them.
  struct Work {
    const QuantizedAttentionKernel* self;
    const float* x;
    float* y;
    Buffers* buffers;
    int64_t t, b, d, row, slices, row_tiles;  // row: qkv's row length 3·D
    PackedWeights keys, values;               // one slice's Kᵀ [d, T] and V [T, d] layouts (no data)
    PackedWeights Keys(int64_t s) const {
      PackedWeights w = keys;
      w.data = buffers->keys.data() + s * w.Bytes();
      if (!buffers->prepared.empty()) w.prepared = &buffers->prepared[2 * s];
      return w;
    }
    PackedWeights Values(int64_t s) const {
      PackedWeights w = values;
      w.data = buffers->values.data() + s * w.Bytes();
      if (!buffers->prepared.empty()) w.prepared = &buffers->prepared[2 * s + 1];
      return w;
    }
    // Codes of part (0 = Q, 1 = K, 2 = V) of slice s at a token: d consecutive bytes.
    const uint8_t* Codes(int64_t part, int64_t s, int64_t token) const {
      const int64_t heads = self->heads;
      return buffers->codes.data() + (token * b + s / heads) * row + part * (row / 3) + (s % heads) * d;
    }
  };

  static constexpr int64_t kTileRows = 48;  // a multiple of the AVX2 tile's 6 rows and AVX-512's 8
  static constexpr int64_t kQuantizeRows = 16;
  static constexpr uint32_t kFlip = 0x80808080u;  // code − 128 in each byte

  // Rows [r0, r1) of qkv (r = token·B + batch) into u8 codes, and each head's Σ (q − z_q).
  void QuantizeRows(const Work& w, int64_t r0, int64_t r1) const {
    int exponent = 0;
    // A power-of-two divisor is folded into the query's scale: x / 2^e / s = x / (2^e·s) exactly.
    const bool fold = std::frexp(q_divisor, &exponent) == 0.5f;
    const RowQuantization uq = U8(q, fold ? q.scale * q_divisor : q.scale), uk = U8(k, k.scale), uv = U8(v, v.scale);
    const int64_t dim = w.row / 3;
    thread_local std::vector<float> tls_scaled;
    auto& scaled = tls_scaled;
    scaled.resize(static_cast<size_t>(dim));
    float scale;
    int32_t zero;
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = w.x + r * w.row;
      uint8_t* codes = w.buffers->codes.data() + r * w.row;
      const float* query = x;
      if (!fold) {
        // The exporter's Div, then the query's quantizer: the same two float operations.
        for (int64_t j = 0; j < dim; ++j) scaled[j] = x[j] / q_divisor;
        query = scaled.data();
      }
      kernels->quantize(query, dim, 0, 1, uq, codes, dim, &scale, &zero);
      kernels->quantize(x + dim, dim, 0, 1, uk, codes + dim, dim, &scale, &zero);
      kernels->quantize(x + 2 * dim, dim, 0, 1, uv, codes + 2 * dim, dim, &scale, &zero);
      for (int64_t h = 0; h < heads; ++h) {
        int32_t sum = 0;
        for (int64_t j = 0; j < w.d; ++j) sum += codes[h * w.d + j];
        w.buffers->query_sums[r * heads + h] = sum - static_cast<int32_t>(w.d) * uq.zero;
      }
    }
  }

  // K (part 1) or V (part 2) of slice s as int8 weights, code − 128, in the packed block layout
  // (kernels.h): element (kk, n) at panel n / 16, group kk / 4, byte 4·(n % 16) + kk % 4. Kᵀ [d, T]:
  // a token's 4 consecutive dims are one 32-bit word; V [T, d]: 4 consecutive tokens' codes of a dim.
  void Pack(const Work& w, int64_t part, int64_t s) const {
    const PackedWeights pw = part == 1 ? w.Keys(s) : w.Values(s);
    auto* out = const_cast<uint8_t*>(pw.data);
    std::fill(out, out + pw.Bytes(), uint8_t{0});
    int32_t* sums = (part == 1 ? w.buffers->key_sums.data() : w.buffers->value_sums.data()) + s * pw.np;
    std::fill(sums, sums + pw.np, 0);
    const int64_t panel = pw.PanelBytes();
    // The slice's codes at token 0, and the step to the next token (B rows of qkv).
    const uint8_t* first = w.Codes(part, s, 0);
    const int64_t token_stride = w.b * w.row;
    if (part == 1) {
      for (int64_t token = 0; token < w.t; ++token) {
        const uint8_t* codes = first + token * token_stride;
        uint8_t* column = out + (token / kPanel) * panel + 4 * (token % kPanel);
        int32_t sum = 0;
        for (int64_t g = 0; g < w.d / kGroup; ++g) {
          uint32_t word;
          std::memcpy(&word, codes + kGroup * g, 4);
          word ^= kFlip;
          std::memcpy(column + g * kBlockCodes, &word, 4);
        }
        for (int64_t j = w.d / kGroup * kGroup; j < w.d; ++j)  // a last partial group; dims past d stay 0
          column[(j / kGroup) * kBlockCodes + j % kGroup] = static_cast<uint8_t>(codes[j] ^ 0x80);
        for (int64_t j = 0; j < w.d; ++j) sum += codes[j];
        sums[token] = sum - 128 * static_cast<int32_t>(w.d);
      }
    } else {
      for (int64_t t0 = 0; t0 < w.t; t0 += kGroup) {
        const int64_t count = std::min(kGroup, w.t - t0);
        const uint8_t* rows[kGroup];
        for (int64_t i = 0; i < kGroup; ++i) rows[i] = i < count ? first + (t0 + i) * token_stride : nullptr;
        // Tokens past T read a row of 128s, i.e. weight 0.
        for (int64_t i = count; i < kGroup; ++i) rows[i] = w.buffers->flat.data();
        uint8_t* group = out + (t0 / kGroup) * kBlockCodes;
        for (int64_t j0 = 0; j0 < w.d; j0 += kPanel) {
          const int64_t width = std::min(kPanel, w.d - j0);
          uint32_t words[kPanel];
          for (int64_t c = 0; c < width; ++c)
            words[c] = (static_cast<uint32_t>(rows[0][j0 + c]) | static_cast<uint32_t>(rows[1][j0 + c]) << 8 |
                        static_cast<uint32_t>(rows[2][j0 + c]) << 16 | static_cast<uint32_t>(rows[3][j0 + c]) << 24) ^ kFlip;
          std::memcpy(group + (j0 / kPanel) * panel, words, static_cast<size_t>(4 * width));
        }
        for (int64_t i = 0; i < count; ++i)
          for (int64_t j = 0; j < w.d; ++j) sums[j] += rows[i][j];
      }
    }
    if (part == 2)
      for (int64_t j = 0; j < w.d; ++j) sums[j] -= 128 * static_cast<int32_t>(w.t);
    if (kernels->prepare != nullptr) kernels->prepare(pw, false, const_cast<PreparedWeights*>(pw.prepared));
  }

  // rows × b.n floats y = a·B of u8 rows (stride apart) with their quantizer and Σ (a − z_a) per row.
  void Multiply(const Work& w, const uint8_t* codes, int64_t stride, int64_t rows, float a_scale, int a_zero, const int32_t* row_sums,
                int64_t sums_stride, const PackedWeights& b, const int32_t* b_sums, const OperandQuantizer& bq, float* y) const {
    thread_local std::vector<float> tls_scale;
    thread_local std::vector<int32_t> tls_zero;
    auto& scale = tls_scale;
    auto& zero = tls_zero;
    scale.assign(static_cast<size_t>(rows), a_scale * bq.scale);
    zero.assign(static_cast<size_t>(rows), a_zero);
    QuantizedRows q{codes, stride, scale.data(), zero.data(), nullptr};
    kernels->gemm(q, 0, rows, b, 0, b.np / kPanel, Epilogue{w.buffers->ones.data(), b_sums, w.buffers->zeros.data(), y, b.n});
    const int b_zero = bq.zero - bq.qmin;
    for (int64_t r = 0; r < rows; ++r) {
      const float term = a_scale * bq.scale * static_cast<float>((128 - b_zero) * row_sums[r * sums_stride]);
      float* yr = y + r * b.n;
      for (int64_t c = 0; c < b.n; ++c) yr[c] += term;
    }
  }

  // Query rows [m0, m1) of slice s through both products into the output.
  void Rows(const Work& w, int64_t s, int64_t m0, int64_t m1) const {
    const int64_t rows = m1 - m0, kt = RoundUp(w.t, kGroup), batch = s / heads, h = s % heads;
    // Thread-local buffers, looked up once (each access to a thread_local of this shared library
    // is a __tls_get_addr call).
    thread_local std::vector<float> tls_scores, tls_out;
    thread_local std::vector<uint8_t> tls_p8;
    thread_local std::vector<int32_t> tls_sums;
    auto &scores = tls_scores, &out = tls_out;
    auto& p8 = tls_p8;
    auto& sums = tls_sums;
    const RowQuantization uq = U8(q, q.scale), up = U8(p, p.scale);
    scores.resize(static_cast<size_t>(rows * w.t));
    // The query rows straight from the codes: consecutive tokens of a slice are B rows of qkv apart.
    Multiply(w, w.Codes(0, s, m0), w.b * w.row, rows, q.scale, uq.zero, w.buffers->query_sums.data() + (m0 * w.b + batch) * heads + h,
             w.b * heads, w.Keys(s), w.buffers->key_sums.data() + s * RoundUp(w.t, kPanel), k, scores.data());
    p8.resize(static_cast<size_t>(rows * kt));
    sums.resize(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) kernels->softmax_codes(scores.data() + r * w.t, w.t, up, p8.data() + r * kt, kt, &sums[r]);
    out.resize(static_cast<size_t>(rows * w.d));
    Multiply(w, p8.data(), kt, rows, p.scale, up.zero, sums.data(), 1, w.Values(s), w.buffers->value_sums.data() + s * RoundUp(w.d, kPanel), v, out.data());
    for (int64_t r = 0; r < rows; ++r)
      std::copy(out.data() + r * w.d, out.data() + (r + 1) * w.d, w.y + ((m0 + r) * w.slices + s) * w.d);
  }

  std::unique_ptr<Buffers> Acquire() const {
    std::lock_guard<std::mutex> lock(pool_mutex);
    if (pool.empty()) return std::make_unique<Buffers>();
    auto b = std::move(pool.back());
    pool.pop_back();
    return b;
  }
  void Release(std::unique_ptr<Buffers> b) const {
    std::lock_guard<std::mutex> lock(pool_mutex);
    pool.push_back(std::move(b));
  }
  mutable std::mutex pool_mutex;
  mutable std::vector<std::unique_ptr<Buffers>> pool;

  void Compute(OrtKernelContext* raw) const {
    Ort::KernelContext context(raw);
    auto input = context.GetInput(0);
    const std::vector<int64_t> shape = input.GetTensorTypeAndShapeInfo().GetShape();
    if (shape.size() != 3 || shape[2] % (3 * heads) != 0)
      throw OpError("input qkv has shape " + Dims(shape) + "; expected [T, B, 3·D] with D a multiple of heads=" + std::to_string(heads));
    auto buffers = Acquire();
    Work w{this, input.GetTensorData<float>(), nullptr, buffers.get(), shape[0], shape[1], shape[2] / 3 / heads, shape[2],
           CheckedMul(shape[1], heads, "QuantizedAttention slices"), 0, {}, {}};
    if (w.t > kMaxTerms) throw OpError("T=" + std::to_string(w.t) + " exceeds " + std::to_string(kMaxTerms) + " (the int32 sums would overflow)");
    if (w.d > kMaxTerms)
      throw OpError("head width D/heads=" + std::to_string(w.d) + " exceeds " + std::to_string(kMaxTerms) + " (the int32 sums would overflow)");
    auto output = context.GetOutput(0, {w.t, w.slices, w.d});
    w.y = output.GetTensorMutableData<float>();
    if (w.t == 0 || w.slices == 0 || w.d == 0) return Release(std::move(buffers));
    // Every size below is a checked product: an empty input can claim any B (T and D are bounded).
    w.keys = PackedWeights::Layout(8, w.d, w.t);
    w.values = PackedWeights::Layout(8, w.t, w.d);
    const int64_t rows = CheckedMul(w.t, w.b, "QuantizedAttention rows"), np_t = w.keys.np, np_d = w.values.np;
    // Slack past the last row: the GEMM reads a query row's codes in groups of 4, up to 3 past d.
    buffers->codes.resize(static_cast<size_t>(CheckedMul(rows, w.row, "QuantizedAttention codes") + 64));
    buffers->query_sums.resize(static_cast<size_t>(CheckedMul(rows, heads, "QuantizedAttention query sums")));
    buffers->keys.resize(static_cast<size_t>(CheckedMul(w.slices, w.keys.Bytes(), "QuantizedAttention keys")));
    buffers->values.resize(static_cast<size_t>(CheckedMul(w.slices, w.values.Bytes(), "QuantizedAttention values")));
    buffers->key_sums.resize(static_cast<size_t>(CheckedMul(w.slices, np_t, "QuantizedAttention key sums")));
    buffers->value_sums.resize(static_cast<size_t>(CheckedMul(w.slices, np_d, "QuantizedAttention value sums")));
    if (kernels->prepare != nullptr) buffers->prepared.resize(static_cast<size_t>(CheckedMul(2, w.slices, "QuantizedAttention slices")));
    buffers->flat.assign(static_cast<size_t>(w.d), uint8_t{128});
    buffers->ones.assign(static_cast<size_t>(std::max(np_t, np_d)), 1.f);
    buffers->zeros.assign(static_cast<size_t>(std::max(np_t, np_d)), 0.f);
    context.ParallelFor([](void* data, size_t task) {
      auto& w = *static_cast<Work*>(data);
      const int64_t r0 = static_cast<int64_t>(task) * kQuantizeRows;
      w.self->QuantizeRows(w, r0, std::min(w.t * w.b, r0 + kQuantizeRows));
    }, static_cast<size_t>((rows + kQuantizeRows - 1) / kQuantizeRows), 0, &w);
    context.ParallelFor([](void* data, size_t task) {
      auto& w = *static_cast<Work*>(data);
      w.self->Pack(w, 1 + static_cast<int64_t>(task % 2), static_cast<int64_t>(task) / 2);
    }, static_cast<size_t>(2 * w.slices), 0, &w);
    w.row_tiles = (w.t + kTileRows - 1) / kTileRows;
    context.ParallelFor([](void* data, size_t task) {
      auto& w = *static_cast<Work*>(data);
      const int64_t s = static_cast<int64_t>(task) / w.row_tiles, tile = static_cast<int64_t>(task) % w.row_tiles;
      w.self->Rows(w, s, tile * kTileRows, std::min(w.t, (tile + 1) * kTileRows));
    }, static_cast<size_t>(w.slices * w.row_tiles), 0, &w);
    Release(std::move(buffers));
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept { return GuardedCompute("QuantizedAttention", *this, context); }
};

OrtStatusPtr QuantizedAttentionOp::CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const noexcept {
  return GuardedCreate<QuantizedAttentionKernel>("QuantizedAttention", api, info, kernel);
}

OrtCustomOp* QuantizedAttentionCustomOp() {
  static QuantizedAttentionOp op;
  return &op;
}

}  // namespace onnxvitq
