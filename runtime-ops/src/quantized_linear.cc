#include "quantized_linear.h"

#include "onnxruntime_cxx_api.h"

#include <cmath>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "attributes.h"
#include "kernels.h"
#include "quantize_rows.h"
#include "op_status.h"

namespace onnxvitq {
namespace {

const float* ConstantFloats(const Ort::ConstKernelInfo& info, size_t index, const char* what, int64_t* count) {
  int is_constant = 0;
  Ort::ConstValue v = info.GetTensorConstantInput(index, &is_constant);
  if (!is_constant) throw OpError(std::string("input ") + std::to_string(index) + " (" + what + ") must be an initializer");
  auto type = v.GetTensorTypeAndShapeInfo();
  if (type.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw OpError(std::string(what) + " must be float");
  *count = static_cast<int64_t>(type.GetElementCount());
  return v.GetTensorData<float>();
}

}  // namespace

const OpSchema& QuantizedLinearSchema() {
  static const OpSchema schema{
      "QuantizedLinear",
      {
          AttributeSpec::Int("k", 1, kMaxDepth),
          AttributeSpec::Int("n", 1, 2147483647),
          AttributeSpec::Int("weight_bits", 8, 4, 8),
          AttributeSpec::String("activation", true, {"token", "static", "shift-log2"}),
          AttributeSpec::Int("activation_bits", 8, 2, 8).RequiredWhen("activation", {"shift-log2"}),
          AttributeSpec::Float("outlier_alpha", 0.f, FloatDomain::NonNegative),
          AttributeSpec::Float("activation_scale", 1.f, FloatDomain::Positive).RequiredWhen("activation", {"static", "shift-log2"}),
          AttributeSpec::Int("activation_zero_point", 0, 0, 255).RequiredWhen("activation", {"static"}),
          AttributeSpec::Int("activation_qmin", 0, 0, 255),
          AttributeSpec::Int("activation_qmax", 255, 0, 255),
          AttributeSpec::Float("activation_shift", 0.f, FloatDomain::Any).RequiredWhen("activation", {"shift-log2"}),
          AttributeSpec::Float("activation_epsilon", 0.f, FloatDomain::NonNegative).RequiredWhen("activation", {"shift-log2"}),
          AttributeSpec::Float("layernorm_epsilon", 1e-5f, FloatDomain::NonNegative),
          AttributeSpec::String("epilogue", false, {"none", "gelu"}),
      }};
  return schema;
}

struct QuantizedLinearKernel;

struct QuantizedLinearOp : Ort::CustomOpBase<QuantizedLinearOp, QuantizedLinearKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const noexcept;
  const char* GetName() const { return "QuantizedLinear"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 6; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index >= 3 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

struct QuantizedLinearKernel {
  std::string node;
  const Kernels* kernels = nullptr;
  PackedWeights weights;
  RowQuantization activation;
  std::vector<float> col_scale, bias;  // padded to np
  std::vector<int32_t> col_sum;
  std::vector<float> dequantized;      // [k × n], only with outliers or Shift-Log2 (float residuals)
  std::unique_ptr<PreparedWeights> prepared;  // the kernel table's weight layouts, when it has them
  bool gelu = false;  // epilogue "gelu": Y = GELU(dequant(…) + bias (+ outliers))
  std::optional<ShiftLog2> shift_log2;  // activation "shift-log2"
  // Inputs 4 and 5: LayerNorm γ and β applied to each row of X before it is quantized (fused
  // LayerNormalization → linear); empty when X is used as it is.
  std::vector<float> ln_gamma, ln_beta;
  float ln_epsilon = 1e-5f;

  QuantizedLinearKernel(const OrtApi&, const OrtKernelInfo* raw) {
    Ort::ConstKernelInfo info(raw);
    node = info.GetNodeName();
    const char* error = nullptr;
    kernels = SelectKernels(&error);
    if (kernels == nullptr) throw OpError(error);

    const AttributeReader attributes(info, QuantizedLinearSchema());
    // Every size below is derived from these through PackedWeights::Layout, which checks them.
    weights = PackedWeights::Layout(static_cast<int>(attributes.Int("weight_bits")), attributes.Int("k"), attributes.Int("n"));

    int is_constant = 0;
    Ort::ConstValue packed = info.GetTensorConstantInput(1, &is_constant);
    if (!is_constant) throw OpError("input 1 (packed weights) must be an initializer");
    const auto packed_type = packed.GetTensorTypeAndShapeInfo();
    if (packed_type.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8) throw OpError("packed weights must be uint8");
    if (static_cast<int64_t>(packed_type.GetElementCount()) != weights.Bytes())
      throw OpError("packed weights have " + std::to_string(packed_type.GetElementCount()) + " bytes; k=" +
                    std::to_string(weights.k) + ", n=" + std::to_string(weights.n) + " at " + std::to_string(weights.bits) +
                    " bits need " + std::to_string(weights.Bytes()));
    weights.data = packed.GetTensorData<uint8_t>();
    const std::string mode = attributes.String("activation");
    // Shift-Log2 rows are int16 values; a table whose GEMM multiplies only u8 codes (AVX-512
    // VNNI) hands this op to the AVX2 table, which every such CPU also runs.
    if (mode == "shift-log2" && !kernels->wide_rows) kernels = &Avx2Kernels();
    if (kernels->prepare != nullptr) {
      prepared = std::make_unique<PreparedWeights>();
      kernels->prepare(weights, mode == "shift-log2", prepared.get());
      weights.prepared = prepared.get();
    }

    int64_t scales = 0;
    const float* scale = ConstantFloats(info, 2, "weight scale", &scales);
    if (scales != weights.n && scales != 1) throw OpError("weight scale has " + std::to_string(scales) + " values; expected 1 or n=" + std::to_string(weights.n));
    col_scale.assign(weights.np, 0.f);
    for (int64_t c = 0; c < weights.n; ++c) col_scale[c] = scale[scales == 1 ? 0 : c];

    bias.assign(weights.np, 0.f);
    if (info.GetInputCount() > 3) {
      int64_t count = 0;
      const float* b = ConstantFloats(info, 3, "bias", &count);
      if (count != weights.n) throw OpError("bias has " + std::to_string(count) + " values; expected n=" + std::to_string(weights.n));
      for (int64_t c = 0; c < weights.n; ++c) bias[c] = b[c];
    }

    col_sum.assign(weights.np, 0);
    for (int64_t c = 0; c < weights.n; ++c)
      for (int64_t kk = 0; kk < weights.k; ++kk) col_sum[c] += weights.Code(kk, c);

    if (mode == "token") {
      activation.dynamic = true;
      activation.levels = (1 << attributes.Int("activation_bits")) - 1;
      activation.alpha = attributes.Float("outlier_alpha");
    } else if (mode == "static") {
      activation.dynamic = false;
      activation.scale = attributes.Float("activation_scale");
      activation.zero = static_cast<int>(attributes.Int("activation_zero_point"));
      activation.qmin = static_cast<int>(attributes.Int("activation_qmin"));
      activation.qmax = static_cast<int>(attributes.Int("activation_qmax"));
      if (activation.qmin > activation.qmax || activation.zero < activation.qmin || activation.zero > activation.qmax)
        throw OpError("static activation codes must satisfy 0 ≤ qmin ≤ zero_point ≤ qmax ≤ 255");
    } else {  // shift-log2
      activation.dynamic = false;
      shift_log2.emplace();
      shift_log2->scale = attributes.Float("activation_scale");
      shift_log2->shift = attributes.Float("activation_shift");
      // ε = span·2^(−2^k) is 0 in float at 8 bits: x' = 0 is then the lowest level, as in the portable graph.
      shift_log2->epsilon = attributes.Float("activation_epsilon");
      shift_log2->qmax = (1 << attributes.Int("activation_bits")) - 1;
      int max_code = 1;
      for (int64_t c = 0; c < weights.n; ++c)
        for (int64_t kk = 0; kk < weights.k; ++kk) max_code = std::max(max_code, std::abs(weights.Code(kk, c)));
      const int top = ShiftLog2Top(weights.kp, max_code);
      if (top == 0) throw OpError("k=" + std::to_string(weights.k) + " is too large for exact Shift-Log2 sums in int32");
      shift_log2->top = top;
      // x̂ = scale·2^(−top)·value + shift: the constant part is shift·Σ_k W[k, c], folded into the bias.
      for (int64_t c = 0; c < weights.n; ++c) bias[c] += col_scale[c] * shift_log2->shift * static_cast<float>(col_sum[c]);
    }

    if (info.GetInputCount() > 4) {
      int64_t count = 0;
      const float* g = ConstantFloats(info, 4, "layernorm scale", &count);
      if (count != weights.k) throw OpError("layernorm scale has " + std::to_string(count) + " values; expected k=" + std::to_string(weights.k));
      ln_gamma.assign(g, g + count);
      ln_beta.assign(weights.k, 0.f);
      if (info.GetInputCount() > 5) {
        const float* b = ConstantFloats(info, 5, "layernorm bias", &count);
        if (count != weights.k) throw OpError("layernorm bias has " + std::to_string(count) + " values; expected k=" + std::to_string(weights.k));
        ln_beta.assign(b, b + count);
      }
      ln_epsilon = attributes.Float("layernorm_epsilon");
      // The float residuals read X itself; normalising it twice is not worth a fusion.
      if (shift_log2 || activation.alpha > 0) throw OpError("layernorm inputs need activation 'static' or 'token' without outlier_alpha");
    }

    gelu = attributes.String("epilogue") == "gelu";

    if ((activation.dynamic && activation.alpha > 0) || shift_log2) {
      dequantized.resize(static_cast<size_t>(weights.k * weights.n));
      for (int64_t kk = 0; kk < weights.k; ++kk)
        for (int64_t c = 0; c < weights.n; ++c) dequantized[kk * weights.n + c] = weights.Code(kk, c) * col_scale[c];
    }
  }

  // One call: each task takes a block of rows through the whole op — quantize (after the fused
  // LayerNorm), GEMM over its panels, the float residual, GELU — so the rows' codes are written and
  // read by one core and the op waits for ONNX Runtime's thread pool once. (Quantizing every row
  // first in a parallel pass of its own cost a second hand-off per op: the DeiT-Tiny model has 48
  // such ops per image.) Few row blocks (small M) are split across panels too; their rows are then
  // quantized once per panel block.
  struct Work {
    const QuantizedLinearKernel* self;
    const float* x;
    float* y;
    int64_t m, row_block, row_tiles, panel_block, panel_tiles;
  };

  // Per thread, reused across calls: a block's codes (or Shift-Log2 values) and row parameters.
  struct Scratch {
    std::vector<uint8_t> codes;
    std::vector<int16_t> wide;
    std::vector<int32_t> dropped, dropped_count, zero;
    std::vector<float> scale, normalised;
  };

  void Block(const Work& w, int64_t m0, int64_t m1, int64_t p0, int64_t p1) const {
    thread_local Scratch t;
    const int64_t rows = m1 - m0, k = weights.k, kp = weights.kp, n = weights.n;
    const float* x = w.x + m0 * k;
    float* y = w.y + m0 * n;
    t.scale.resize(static_cast<size_t>(rows));
    t.zero.resize(static_cast<size_t>(rows));
    if (shift_log2) {
      t.wide.resize(static_cast<size_t>(rows * kp));
      t.dropped.resize(static_cast<size_t>(rows * k));
      t.dropped_count.resize(static_cast<size_t>(rows));
      std::fill(t.scale.begin(), t.scale.end(), std::ldexp(shift_log2->scale, -shift_log2->top));
      std::fill(t.zero.begin(), t.zero.end(), -(1 << (shift_log2->top - 1)));
      kernels->shift_log2(x, k, 0, rows, *shift_log2, t.wide.data(), kp, t.dropped.data(), t.dropped_count.data());
    } else {
      t.codes.resize(static_cast<size_t>(rows * kp));
      if (!ln_gamma.empty()) {
        // One row at a time through a cache-resident buffer: the row normalised (the kernel
        // table's LayerNorm, vectorised for its ISA), then quantized.
        t.normalised.resize(static_cast<size_t>(k));
        for (int64_t r = 0; r < rows; ++r) {
          kernels->layernorm(x + r * k, k, ln_gamma.data(), ln_beta.data(), ln_epsilon, t.normalised.data());
          kernels->quantize(t.normalised.data(), k, 0, 1, activation, t.codes.data() + r * kp, kp, t.scale.data() + r, t.zero.data() + r);
        }
      } else {
        kernels->quantize(x, k, 0, rows, activation, t.codes.data(), kp, t.scale.data(), t.zero.data());
      }
    }
    QuantizedRows quantized{t.codes.data(), kp, t.scale.data(), t.zero.data(), shift_log2 ? t.wide.data() : nullptr};
    kernels->gemm(quantized, 0, rows, weights, p0, p1, Epilogue{col_scale.data(), col_sum.data(), bias.data(), y, n});
    const int64_t c0 = p0 * kPanel, c1 = std::min(n, p1 * kPanel);
    if (!dequantized.empty()) {
      // Float residuals, Y[r] += v·W[k] per listed element of row r: outliers (|x| ≥ α, quantized
      // as 0) with v = x, restored exactly; Shift-Log2 levels past top with v = s·2^(−q), the part
      // of x̂ the int16 values could not hold (x̂'s constant part is in the bias).
      auto add = [&](float* out, int64_t i, float v) {
        const float* row = dequantized.data() + i * n;
        for (int64_t c = c0; c < c1; ++c) out[c] += v * row[c];
      };
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * k;
        float* yr = y + r * n;
        if (shift_log2) {
          for (int32_t j = 0; j < t.dropped_count[r]; ++j) {
            const int32_t i = t.dropped[r * k + j];
            add(yr, i, ShiftLog2Level(xr[i], *shift_log2));
          }
        } else {
          for (int64_t i = 0; i < k; ++i)
            if (std::fabs(xr[i]) >= activation.alpha) add(yr, i, xr[i]);
        }
      }
    }
    // The block is still in cache: GELU here saves the separate op's pass over Y.
    if (gelu)
      for (int64_t r = 0; r < rows; ++r) kernels->gelu(y + r * n + c0, c1 - c0);
  }

  void Compute(OrtKernelContext* raw) const {
    Ort::KernelContext context(raw);
    auto input = context.GetInput(0);
    const auto info = input.GetTensorTypeAndShapeInfo();
    const std::vector<int64_t> shape = info.GetShape();
    if (shape.empty() || shape.back() != weights.k) {
      throw OpError("input X has shape " + Dims(shape) + "; its last axis must be k=" + std::to_string(weights.k));
    }
    const int64_t m = static_cast<int64_t>(info.GetElementCount()) / weights.k;
    std::vector<int64_t> out_shape = shape;
    out_shape.back() = weights.n;
    auto output = context.GetOutput(0, out_shape);
    if (m == 0) return;

    Work work{this, input.GetTensorData<float>(), output.GetTensorMutableData<float>(), m, 0, 0, 0, 0};
    // About 16 blocks, 8 to 64 rows each (the AVX-512 tile's 8 rows; 64 rows of K = 768 codes and
    // their output stay in L2); below 4 blocks the panels are split as well.
    work.row_block = std::min<int64_t>(64, std::max<int64_t>(8, RoundUp((m + 15) / 16, 8)));
    work.row_tiles = (m + work.row_block - 1) / work.row_block;
    const int64_t panels = weights.np / kPanel;
    const int64_t splits = work.row_tiles >= 4 ? 1 : std::min(panels, (4 + work.row_tiles - 1) / work.row_tiles);
    work.panel_block = RoundUp((panels + splits - 1) / splits, 3);  // whole 3-panel tiles
    work.panel_tiles = (panels + work.panel_block - 1) / work.panel_block;
    context.ParallelFor([](void* data, size_t task) {
      auto& w = *static_cast<Work*>(data);
      const int64_t rt = static_cast<int64_t>(task) % w.row_tiles, pt = static_cast<int64_t>(task) / w.row_tiles;
      const int64_t m0 = rt * w.row_block, m1 = std::min(w.m, m0 + w.row_block);
      const int64_t p0 = pt * w.panel_block, p1 = std::min(w.self->weights.np / kPanel, p0 + w.panel_block);
      w.self->Block(w, m0, m1, p0, p1);
    }, static_cast<size_t>(work.row_tiles * work.panel_tiles), 0, &work);
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept { return GuardedCompute("QuantizedLinear", *this, context); }
};

OrtStatusPtr QuantizedLinearOp::CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const noexcept {
  return GuardedCreate<QuantizedLinearKernel>("QuantizedLinear", api, info, kernel);
}

OrtCustomOp* QuantizedLinearCustomOp() {
  static QuantizedLinearOp op;
  return &op;
}

}  // namespace onnxvitq
