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

  // The four attributes of operand p, for its op's schema. required: false where another mode of
  // the op does not read them (QuantizedMatMul's log2 A); Read requires them all the same.
  static std::vector<AttributeSpec> Specs(const std::string& p, bool required) {
    auto integer = [&](const char* suffix) {
      return required ? AttributeSpec::Int((p + suffix).c_str(), -kCodeLimit, kCodeLimit)
                      : AttributeSpec::Int((p + suffix).c_str(), 0, -kCodeLimit, kCodeLimit);
    };
    return {required ? AttributeSpec::Float((p + "_scale").c_str(), FloatDomain::Positive)
                     : AttributeSpec::Float((p + "_scale").c_str(), 1.f, FloatDomain::Positive),
            integer("_zero_point"), integer("_qmin"), integer("_qmax")};
  }

  static OperandQuantizer Read(const AttributeReader& attributes, const std::string& p) {
    OperandQuantizer q;
    q.scale = attributes.RequiredFloat((p + "_scale").c_str());
    q.zero = static_cast<int>(attributes.RequiredInt((p + "_zero_point").c_str()));
    q.qmin = static_cast<int>(attributes.RequiredInt((p + "_qmin").c_str()));
    q.qmax = static_cast<int>(attributes.RequiredInt((p + "_qmax").c_str()));
    if (q.qmin > q.zero || q.zero > q.qmax || q.qmax - q.qmin > 255)
      throw OpError(p + ": codes must satisfy qmin ≤ zero_point ≤ qmax with at most 256 levels");
    return q;
  }
};

}  // namespace onnxvitq
