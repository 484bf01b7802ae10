// A uniform per-tensor quantizer of an activation operand, read from a node's attributes
// p_scale, p_zero_point, p_qmin, p_qmax (QuantizedMatMul's a and b, QuantizedAttention's q, k, p, v).
#pragma once
#include <string>
#include <vector>
#include "attributes.h"
#include "op_status.h"

namespace onnxvitq {

struct OperandQuantizer {
  float scale = 1;
  int zero = 0, qmin = 0, qmax = 255;

  // Codes in any 256-level window of [−kCodeLimit, kCodeLimit] (int8, uint8 or shifted forms):
  // wide enough for every emitted quantizer, small enough that no code arithmetic overflows.
  static constexpr int64_t kCodeLimit = 65536;

  // The four attributes of operand p, for its op's schema: required, or (when_attribute given)
  // required when that attribute is when_value — the scale then always (another mode reads it too).
  static std::vector<AttributeSpec> Specs(const std::string& p, const char* when_attribute = nullptr, const char* when_value = nullptr) {
    auto integer = [&](const char* suffix) {
      return when_attribute == nullptr ? AttributeSpec::Int((p + suffix).c_str(), -kCodeLimit, kCodeLimit)
                                       : AttributeSpec::Int((p + suffix).c_str(), 0, -kCodeLimit, kCodeLimit).RequiredWhen(when_attribute, {when_value});
    };
    return {AttributeSpec::Float((p + "_scale").c_str(), FloatDomain::Positive), integer("_zero_point"), integer("_qmin"), integer("_qmax")};
  }

  static OperandQuantizer Read(const AttributeReader& attributes, const std::string& p) {
    OperandQuantizer q;
    q.scale = attributes.Float((p + "_scale").c_str());
    q.zero = static_cast<int>(attributes.Int((p + "_zero_point").c_str()));
    q.qmin = static_cast<int>(attributes.Int((p + "_qmin").c_str()));
    q.qmax = static_cast<int>(attributes.Int((p + "_qmax").c_str()));
    if (q.qmin > q.zero || q.zero > q.qmax || q.qmax - q.qmin > 255)
      throw OpError(p + ": codes must satisfy qmin ≤ zero_point ≤ qmax with at most 256 levels");
    return q;
  }
};

}  // namespace onnxvitq
