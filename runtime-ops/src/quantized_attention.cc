#include "quantized_attention.h"

#include "onnxruntime_cxx_api.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kernels.h"
#include "op_status.h"
#include "operand_quantizer.h"

namespace onnxvitq {

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
    try {
      heads = info.GetAttribute<int64_t>("heads");
    } catch (const Ort::Exception&) {
      throw OpError("attribute 'heads' is missing");
    }
    if (heads < 1) throw OpError("heads must be positive, not " + std::to_string(heads));
    std::string layout = "tbd";
    try {
      layout = info.GetAttribute<std::string>("layout");
    } catch (const Ort::Exception&) {
    }
    if (layout != "tbd") throw OpError("attribute 'layout' must be 'tbd', not '" + layout + "'");
    try {
      q_divisor = info.GetAttribute<float>("q_divisor");
    } catch (const Ort::Exception&) {
    }
    if (!std::isfinite(q_divisor) || q_divisor == 0) throw OpError("q_divisor must be finite and non-zero");
    q = OperandQuantizer::Read(info, "q");
    k = OperandQuantizer::Read(info, "k");
    p = OperandQuantizer::Read(info, "p");
    v = OperandQuantizer::Read(info, "v");
  }

  // One call's sizes and buffers. Slice s = b·heads + h. K and V of every slice are quantized and
  // packed once (first phase), into the (k, k+1) pair layout of Kernels::product's right operand:
  // Kᵀ [d, T] for Q·Kᵀ, V [T, d] for P·V.
  struct Work {
    const QuantizedAttentionKernel* self;
    const float* x;
    float* y;
    int64_t t, b, d, row, slices, row_tiles;  // row: qkv's row length 3·D
    int64_t kp_d, np_t, kp_t, np_d;             // the products' padded sizes
    std::unique_ptr<int16_t[]> keys, values;    // [slices][kp_d·np_t], [slices][kp_t·np_d]
  };

  static constexpr int64_t kTileRows = 48;  // a multiple of the AVX2 tile's 6 rows and AVX-512's 8

  const float* Part(const Work& w, int64_t part, int64_t s, int64_t token) const {
    const int64_t b = s / heads, h = s % heads;
    return w.x + (token * w.b + b) * w.row + part * (w.row / 3) + h * w.d;
  }

  void PackKeys(const Work& w, int64_t s) const {
    int16_t* out = w.keys.get() + s * w.kp_d * w.np_t;
    std::fill(out, out + w.kp_d * w.np_t, int16_t{0});
    thread_local std::vector<int16_t> codes;
    codes.assign(static_cast<size_t>(w.kp_d), 0);
    for (int64_t token = 0; token < w.t; ++token) {
      kernels->centre(Part(w, 1, s, token), w.d, k.scale, k.zero, k.qmin, k.qmax, codes.data());
      // Column `token` of Kᵀ: pair i = (2i, 2i + 1) at out[i·2·np_t + 2·token + (0|1)].
      for (int64_t i = 0; i < w.kp_d / 2; ++i) {
        out[i * 2 * w.np_t + 2 * token] = codes[2 * i];
        out[i * 2 * w.np_t + 2 * token + 1] = codes[2 * i + 1];
      }
    }
  }

  void PackValues(const Work& w, int64_t s) const {
    int16_t* out = w.values.get() + s * w.kp_t * w.np_d;
    std::fill(out, out + w.kp_t * w.np_d, int16_t{0});
    thread_local std::vector<int16_t> codes;
    codes.resize(static_cast<size_t>(w.d));
    for (int64_t token = 0; token < w.t; ++token) {
      kernels->centre(Part(w, 2, s, token), w.d, v.scale, v.zero, v.qmin, v.qmax, codes.data());
      int16_t* pair = out + (token / 2) * 2 * w.np_d + (token & 1);
      for (int64_t c = 0; c < w.d; ++c) pair[2 * c] = codes[c];
    }
  }

  // Query rows [m0, m1) of slice s through both products into the output.
  void Rows(const Work& w, int64_t s, int64_t m0, int64_t m1) const {
    const int64_t rows = m1 - m0;
    thread_local std::vector<float> scaled, scores, out;
    thread_local std::vector<int16_t> a16, p16;
    scaled.resize(static_cast<size_t>(w.d));
    a16.assign(static_cast<size_t>(rows * w.kp_d), 0);
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = Part(w, 0, s, m0 + r);
      // The exporter's Div, then the query's quantizer: the same two float operations.
      for (int64_t j = 0; j < w.d; ++j) scaled[j] = x[j] / q_divisor;
      kernels->centre(scaled.data(), w.d, q.scale, q.zero, q.qmin, q.qmax, a16.data() + r * w.kp_d);
    }
    scores.resize(static_cast<size_t>(rows * w.t));
    kernels->product(a16.data(), w.kp_d, w.keys.get() + s * w.kp_d * w.np_t, w.np_t, 0, rows, w.t, q.scale * k.scale, scores.data());
    p16.assign(static_cast<size_t>(rows * w.kp_t), 0);
    for (int64_t r = 0; r < rows; ++r) {
      float* row = scores.data() + r * w.t;
      kernels->softmax(row, w.t);
      kernels->centre(row, w.t, p.scale, p.zero, p.qmin, p.qmax, p16.data() + r * w.kp_t);
    }
    out.resize(static_cast<size_t>(rows * w.d));
    kernels->product(p16.data(), w.kp_t, w.values.get() + s * w.kp_t * w.np_d, w.np_d, 0, rows, w.d, p.scale * v.scale, out.data());
    for (int64_t r = 0; r < rows; ++r)
      std::copy(out.data() + r * w.d, out.data() + (r + 1) * w.d, w.y + ((m0 + r) * w.slices + s) * w.d);
  }

  void Compute(OrtKernelContext* raw) const {
    Ort::KernelContext context(raw);
    auto input = context.GetInput(0);
    const std::vector<int64_t> shape = input.GetTensorTypeAndShapeInfo().GetShape();
    if (shape.size() != 3 || shape[2] % (3 * heads) != 0)
      throw OpError("input qkv has shape " + Dims(shape) + "; expected [T, B, 3·D] with D a multiple of heads=" + std::to_string(heads));
    Work w{this, input.GetTensorData<float>(), nullptr, shape[0], shape[1], shape[2] / 3 / heads, shape[2], shape[1] * heads, 0, 0, 0, 0, 0, {}, {}};
    // Int32 sums of P·V stay exact while T·255² < 2^31.
    if (w.t > 32768) throw OpError("T=" + std::to_string(w.t) + " exceeds 32768 (the int32 sums would overflow)");
    auto output = context.GetOutput(0, {w.t, w.slices, w.d});
    w.y = output.GetTensorMutableData<float>();
    if (w.t == 0 || w.slices == 0 || w.d == 0) return;
    w.kp_d = RoundUp(w.d, 2);
    w.np_t = RoundUp(w.t, kPanel);
    w.kp_t = RoundUp(w.t, 2);
    w.np_d = RoundUp(w.d, kPanel);
    w.keys.reset(new int16_t[static_cast<size_t>(w.slices * w.kp_d * w.np_t)]);
    w.values.reset(new int16_t[static_cast<size_t>(w.slices * w.kp_t * w.np_d)]);
    context.ParallelFor([](void* data, size_t task) {
      auto& w = *static_cast<Work*>(data);
      const int64_t s = static_cast<int64_t>(task) / 2;
      if (task % 2 == 0) w.self->PackKeys(w, s);
      else w.self->PackValues(w, s);
    }, static_cast<size_t>(2 * w.slices), 0, &w);
    w.row_tiles = (w.t + kTileRows - 1) / kTileRows;
    context.ParallelFor([](void* data, size_t task) {
      auto& w = *static_cast<Work*>(data);
      const int64_t s = static_cast<int64_t>(task) / w.row_tiles, tile = static_cast<int64_t>(task) % w.row_tiles;
      w.self->Rows(w, s, tile * kTileRows, std::min(w.t, (tile + 1) * kTileRows));
    }, static_cast<size_t>(w.slices * w.row_tiles), 0, &w);
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
