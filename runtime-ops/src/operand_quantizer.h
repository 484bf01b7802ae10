// A uniform per-tensor quantizer of an activation operand, read from a node's attributes
// p_scale, p_zero_point, p_qmin, p_qmax (QuantizedMatMul's a and b, QuantizedAttention's q, k, p, v).
#pragma once
#include <cmath>
#include <string>
#include "onnxruntime_cxx_api.h"
#include "op_status.h"

namespace onnxvitq {

struct OperandQuantizer {
  float scale = 1;
  int zero = 0, qmin = 0, qmax = 255;

  static OperandQuantizer Read(const Ort::ConstKernelInfo& info, const std::string& p) {
    OperandQuantizer q;
    try {
      q.scale = info.GetAttribute<float>((p + "_scale").c_str());
      q.zero = static_cast<int>(info.GetAttribute<int64_t>((p + "_zero_point").c_str()));
      q.qmin = static_cast<int>(info.GetAttribute<int64_t>((p + "_qmin").c_str()));
      q.qmax = static_cast<int>(info.GetAttribute<int64_t>((p + "_qmax").c_str()));
    } catch (const Ort::Exception&) {
      throw OpError("attributes " + p + "_scale, " + p + "_zero_point, " + p + "_qmin and " + p + "_qmax are required");
    }
    if (!(q.scale > 0) || !std::isfinite(q.scale)) throw OpError(p + "_scale must be positive and finite");
    if (q.qmin > q.zero || q.zero > q.qmax || q.qmax - q.qmin > 255)
      throw OpError(p + ": codes must satisfy qmin ≤ zero_point ≤ qmax with at most 256 levels");
    return q;
  }
};

}  // namespace onnxvitq
