#include "quantized_matmul.h"

#include "onnxruntime_cxx_api.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "attributes.h"
#include "kernels.h"
#include "op_status.h"
#include "operand_quantizer.h"
#include "quantize_rows.h"

namespace onnxvitq {
namespace {

// A's quantizer when a_kind = "log2" (the post-Softmax log2 quantizer, as ADFQ-ViT's softmax·V):
// x̂ = scale·2^(−q), q = round(−log2(max(x, 1e-30)/scale)) ≥ 0, the last code 2^bits − 1 (and past
// it) exact zero. Its values enter the product as int16 powers of two (Kernels::shift_log2, the
// Shift-Log2 linear's form with shift 0); levels past `top` are added in float.
ShiftLog2 ReadLog2(const AttributeReader& attributes) {
  ShiftLog2 q;
  q.scale = attributes.Float("a_scale");
  const int64_t bits = attributes.Int("a_bits");
  q.epsilon = 1e-30f;  // the portable graph's Max(x, tiny)
  q.zero_code = static_cast<int>((1 << bits) - 1);
  q.qmax = q.zero_code;
  return q;
}

}  // namespace

const OpSchema& QuantizedMatMulSchema() {
  static const OpSchema schema = [] {
    OpSchema s{"QuantizedMatMul",
               {AttributeSpec::String("a_kind", false, {"uniform", "log2"}), AttributeSpec::Int("a_bits", 8, 2, 8).RequiredWhen("a_kind", {"log2"})}};
    // A's scale is read in both modes (log2: its largest level); its grid only when uniform.
    for (auto& spec : OperandQuantizer::Specs("a", "a_kind", "uniform")) s.attributes.push_back(spec);
    for (auto& spec : OperandQuantizer::Specs("b")) s.attributes.push_back(spec);
    return s;
  }();
  return schema;
}

struct QuantizedMatMulKernel;

struct QuantizedMatMulOp : Ort::CustomOpBase<QuantizedMatMulOp, QuantizedMatMulKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const noexcept;
  const char* GetName() const { return "QuantizedMatMul"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetInputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

struct QuantizedMatMulKernel {
  std::string node;
  const Kernels* kernels = nullptr;
  OperandQuantizer a, b;
  std::optional<ShiftLog2> a_log2;  // a_kind "log2", else A is uniform (a)
  // The table whose shift_log2 writes A's powers (the AVX-512 one has none; its CPUs run AVX2).
  const Kernels* log2_rows = nullptr;

  QuantizedMatMulKernel(const OrtApi&, const OrtKernelInfo* raw) {
    Ort::ConstKernelInfo info(raw);
    node = info.GetNodeName();
    const char* error = nullptr;
    kernels = SelectKernels(&error);
    if (kernels == nullptr) throw OpError(error);
    const AttributeReader attributes(info, QuantizedMatMulSchema());
    if (attributes.String("a_kind") == "log2") {
      a_log2 = ReadLog2(attributes);
      log2_rows = kernels->shift_log2 != nullptr ? kernels : &Avx2Kernels();
    } else {
      a = OperandQuantizer::Read(attributes, "a");
    }
    b = OperandQuantizer::Read(attributes, "b");
  }

  struct Work {
    const QuantizedMatMulKernel* self;
    const float *a, *b;
    int64_t m, k, n, kp, np, row_tiles;
    std::vector<int64_t> a_of, b_of;  // per output slice: the operand slices it multiplies
    uint64_t call;                    // tells one Compute's packed B from another's
    float* y;
    ShiftLog2 log2;                   // A's log2 quantizer with this K's top (a_kind "log2")
  };

  // Each task does all of one output tile's work: quantize its rows of A, quantize and pack B
  // (once per slice and thread: ONNX Runtime hands a thread consecutive tasks, which mostly share
  // the slice; a different one is simply packed again), and multiply. No operand buffer is shared
  // between tasks: at batch 8 the buffers of a quantize-everything-first pass (1.2 MB) and the
  // output (3.7 MB) together exceed a core's L2 (2 MB on the machine measured).
  static constexpr int64_t kTileRows = 48;  // a multiple of the AVX2 tile's 6 rows and AVX-512's 8

  // Rows [m0, m1) of A slice s, centred, at the same row offsets in out (stride kp).
  void CentreA(const Work& w, int64_t s, int64_t m0, int64_t m1, int16_t* out) const {
    const float* x = w.a + s * w.m * w.k;
    for (int64_t r = m0; r < m1; ++r) {
      kernels->centre(x + r * w.k, w.k, a.scale, a.zero, a.qmin, a.qmax, out + r * w.kp);
      if (w.kp > w.k) out[r * w.kp + w.k] = 0;
    }
  }

  // B slice t into (k, k+1) pairs per column (kernels.h): rows k and k+1 centred (the padding
  // row and columns as zeros), then interleaved.
  // With log2 A, also B's column sums (the powers' centring is undone with them).
  void PackB(const Work& w, int64_t t, int16_t* out, int32_t* col_sum) const {
    const float* v = w.b + t * w.k * w.n;
    thread_local std::vector<int16_t> rows;
    rows.assign(static_cast<size_t>(2 * w.np), 0);
    int16_t *even = rows.data(), *odd = rows.data() + w.np;
    if (col_sum != nullptr) std::fill(col_sum, col_sum + w.np, 0);
    for (int64_t i = 0; i < w.kp; i += 2) {
      kernels->centre(v + i * w.n, w.n, b.scale, b.zero, b.qmin, b.qmax, even);
      if (i + 1 < w.k) kernels->centre(v + (i + 1) * w.n, w.n, b.scale, b.zero, b.qmin, b.qmax, odd);
      else std::fill(odd, odd + w.n, int16_t{0});
      if (col_sum != nullptr)
        for (int64_t c = 0; c < w.n; ++c) col_sum[c] += even[c] + odd[c];
      int16_t* pair = out + i * w.np;
      for (int64_t c = 0; c < w.np; ++c) {
        pair[2 * c] = even[c];
        pair[2 * c + 1] = odd[c];
      }
    }
  }

  void Compute(OrtKernelContext* raw) const {
    Ort::KernelContext context(raw);
    auto left = context.GetInput(0);
    auto right = context.GetInput(1);
    const std::vector<int64_t> sa = left.GetTensorTypeAndShapeInfo().GetShape();
    const std::vector<int64_t> sb = right.GetTensorTypeAndShapeInfo().GetShape();
    if (sa.size() < 2 || sb.size() < 2 || sa[sa.size() - 1] != sb[sb.size() - 2])
      throw OpError("A " + Dims(sa) + " and B " + Dims(sb) + " must be [..., M, K] and [..., K, N]");
    // Leading axes broadcast as MatMul's do (numpy rules, the shorter shape padded with 1s).
    const size_t lead = std::max(sa.size(), sb.size()) - 2;
    std::vector<int64_t> da(lead, 1), db(lead, 1), out_shape(lead);
    std::copy(sa.begin(), sa.end() - 2, da.begin() + (lead - (sa.size() - 2)));
    std::copy(sb.begin(), sb.end() - 2, db.begin() + (lead - (sb.size() - 2)));
    for (size_t i = 0; i < lead; ++i) {
      if (da[i] != db[i] && da[i] != 1 && db[i] != 1)
        throw OpError("A " + Dims(sa) + " and B " + Dims(sb) + ": leading axes do not broadcast");
      out_shape[i] = da[i] == 1 ? db[i] : da[i];
    }
    Work w{this, left.GetTensorData<float>(), right.GetTensorData<float>(), sa[sa.size() - 2], sa.back(), sb.back(), 0, 0, 0, {}, {}, 0, nullptr, {}};
    // The broadcast shape can hold far more elements than either operand, and an empty operand
    // (K = 0, or a 0 axis) can claim any other sizes: the output's sizes are checked before
    // anything is sized or indexed by them.
    int64_t slices = 1;
    for (auto d : out_shape) slices = CheckedMul(slices, d, "QuantizedMatMul output slices");
    const int64_t total = CheckedMul(CheckedMul(slices, w.m, "QuantizedMatMul output rows"), w.n, "QuantizedMatMul output elements");
    // Int32 sums stay exact while K·255² < 2^31.
    if (!a_log2 && w.k > 32768) throw OpError("K=" + std::to_string(w.k) + " exceeds 32768 (the int32 sums would overflow)");
    out_shape.push_back(w.m);
    out_shape.push_back(w.n);
    auto output = context.GetOutput(0, out_shape);
    w.y = output.GetTensorMutableData<float>();
    if (total == 0) return;
    if (w.k == 0) {
      std::fill(w.y, w.y + total, 0.f);
      return;
    }
    // From here every axis of A and B is ≥ 1, so their products are their (allocated) sizes.
    w.a_of.resize(static_cast<size_t>(slices));
    w.b_of.resize(static_cast<size_t>(slices));
    for (int64_t s = 0; s < slices; ++s) {
      int64_t rest = s, ia = 0, ib = 0, stride_a = 1, stride_b = 1;
      for (size_t i = lead; i-- > 0;) {
        const int64_t coord = rest % out_shape[i];
        rest /= out_shape[i];
        if (da[i] != 1) ia += coord * stride_a;
        if (db[i] != 1) ib += coord * stride_b;
        stride_a *= da[i];
        stride_b *= db[i];
      }
      w.a_of[s] = ia;
      w.b_of[s] = ib;
    }
    w.kp = RoundUp(w.k, 2);
    w.np = RoundUp(w.n, kPanel);
    if (a_log2) {
      w.log2 = *a_log2;
      w.log2.top = ShiftLog2Top(w.kp, 255);  // |centred B code| ≤ 255
      if (w.log2.top == 0) throw OpError("K=" + std::to_string(w.k) + " is too large for exact log2 products in int32");
    }
    static std::atomic<uint64_t> calls{0};
    w.call = ++calls;
    w.row_tiles = (w.m + kTileRows - 1) / kTileRows;
    context.ParallelFor([](void* data, size_t task) {
      auto& w = *static_cast<Work*>(data);
      const auto& self = *w.self;
      const bool log2 = self.a_log2.has_value();
      const int64_t s = static_cast<int64_t>(task) / w.row_tiles, t = static_cast<int64_t>(task) % w.row_tiles;
      const int64_t m0 = t * kTileRows, m1 = std::min(w.m, m0 + kTileRows);
      thread_local std::vector<int16_t> a16, b16;
      thread_local std::vector<int32_t> b_sums, dropped, dropped_count;
      thread_local uint64_t packed_call = 0;
      thread_local int64_t packed_slice = -1;
      if (packed_call != w.call || packed_slice != w.b_of[s]) {
        b16.resize(static_cast<size_t>(w.kp * w.np));
        if (log2) b_sums.resize(static_cast<size_t>(w.np));
        self.PackB(w, w.b_of[s], b16.data(), log2 ? b_sums.data() : nullptr);
        packed_call = w.call;
        packed_slice = w.b_of[s];
      }
      a16.resize(static_cast<size_t>((log2 ? kTileRows : w.m) * w.kp));
      float* y = w.y + s * w.m * w.n;
      if (!log2) {
        self.CentreA(w, w.a_of[s], m0, m1, a16.data());
        self.kernels->product(a16.data(), w.kp, b16.data(), w.np, m0, m1, w.n, self.a.scale * self.b.scale, y);
        return;
      }
      // x̂ = scale·2^(−top)·p with p = 2^(top − q), stored centred p − 2^(top−1): the product of the
      // stored values, then + 2^(top−1)·Σ_k B[k, c] per column, then the levels past top in float.
      // The tile's rows from 0 (buffers of one tile, not of the slice: M·K can be large here).
      const int64_t rows = m1 - m0;
      const float* x = w.a + (w.a_of[s] * w.m + m0) * w.k;
      y += m0 * w.n;
      dropped.resize(static_cast<size_t>(rows * w.k));
      dropped_count.resize(static_cast<size_t>(rows));
      self.log2_rows->shift_log2(x, w.k, 0, rows, w.log2, a16.data(), w.kp, dropped.data(), dropped_count.data());
      const float step = std::ldexp(w.log2.scale, -w.log2.top) * self.b.scale;
      self.kernels->product(a16.data(), w.kp, b16.data(), w.np, 0, rows, w.n, step, y);
      const float centre = step * static_cast<float>(1 << (w.log2.top - 1));
      for (int64_t r = 0; r < rows; ++r) {
        float* row = y + r * w.n;
        for (int64_t c = 0; c < w.n; ++c) row[c] += centre * static_cast<float>(b_sums[c]);
        for (int32_t j = 0; j < dropped_count[r]; ++j) {
          const int32_t i = dropped[r * w.k + j];
          const float level = ShiftLog2Level(x[r * w.k + i], w.log2) * self.b.scale;
          // Row i of B, read from the packed pairs: B[i, c] = pairs[(i / 2)·2·np + 2c + (i & 1)].
          const int16_t* v = b16.data() + (i / 2) * 2 * w.np + (i & 1);
          for (int64_t c = 0; c < w.n; ++c) row[c] += level * static_cast<float>(v[2 * c]);
        }
      }
    }, static_cast<size_t>(slices * w.row_tiles), 0, &w);
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept { return GuardedCompute("QuantizedMatMul", *this, context); }
};

OrtStatusPtr QuantizedMatMulOp::CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const noexcept {
  return GuardedCreate<QuantizedMatMulKernel>("QuantizedMatMul", api, info, kernel);
}

OrtCustomOp* QuantizedMatMulCustomOp() {
  static QuantizedMatMulOp op;
  return &op;
}

}  // namespace onnxvitq
