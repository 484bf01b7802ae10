// Every com.onnxvitq attribute is declared once, in its op's schema (name, type, required or its
// default, the accepted values), and read only through AttributeReader against that schema.
// A model file is untrusted input: integers are range-checked as int64 before they are narrowed
// (an int64 zero point of 2^32 + 5 must not become 5), floats must be finite and inside their
// declared domain, strings one of their declared values, and every error names the attribute.
// The schemas are also listed by OnnxViTQOpsSchemas (registration.cc) so that a test can check
// them against the C# side's declarations of the same ops.
#pragma once
#include "onnxruntime_cxx_api.h"

#include <cmath>
#include <cstdio>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "op_status.h"

namespace onnxvitq {

enum class AttributeType { Int, Float, String };

inline std::string FormatFloat(float v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", static_cast<double>(v));
  return text;
}

// What a float attribute may be (all of them must be finite).
enum class FloatDomain { Any, Positive, NonNegative, NonZero };

struct AttributeSpec {
  std::string name;
  AttributeType type = AttributeType::Int;
  bool required = false;
  int64_t int_default = 0, lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  float float_default = 0;
  FloatDomain domain = FloatDomain::Any;
  std::vector<std::string> values;  // String: the accepted values, the first the default when optional
  // Optional attributes that one mode of the op needs: required when the string attribute `when`
  // (its value, or its default) is one of when_values.
  std::string when;
  std::vector<std::string> when_values;

  AttributeSpec RequiredWhen(const char* attribute, std::initializer_list<const char*> modes) const {
    AttributeSpec s = *this;
    s.when = attribute;
    for (const char* m : modes) s.when_values.emplace_back(m);
    return s;
  }

  static AttributeSpec Int(const char* name, int64_t lo, int64_t hi) { return IntSpec(name, true, 0, lo, hi); }
  static AttributeSpec Int(const char* name, int64_t fallback, int64_t lo, int64_t hi) { return IntSpec(name, false, fallback, lo, hi); }
  static AttributeSpec Float(const char* name, FloatDomain domain) { return FloatSpec(name, true, 0, domain); }
  static AttributeSpec Float(const char* name, float fallback, FloatDomain domain) { return FloatSpec(name, false, fallback, domain); }
  static AttributeSpec String(const char* name, bool required, std::initializer_list<const char*> values) {
    AttributeSpec s;
    s.name = name;
    s.type = AttributeType::String;
    s.required = required;
    for (const char* v : values) s.values.emplace_back(v);
    return s;
  }

 private:
  static AttributeSpec IntSpec(const char* name, bool required, int64_t fallback, int64_t lo, int64_t hi) {
    AttributeSpec s;
    s.name = name;
    s.required = required;
    s.int_default = fallback;
    s.lo = lo;
    s.hi = hi;
    return s;
  }
  static AttributeSpec FloatSpec(const char* name, bool required, float fallback, FloatDomain domain) {
    AttributeSpec s;
    s.name = name;
    s.type = AttributeType::Float;
    s.required = required;
    s.float_default = fallback;
    s.domain = domain;
    return s;
  }
};

struct OpSchema {
  const char* op;
  std::vector<AttributeSpec> attributes;

  const AttributeSpec& Find(const std::string& name, AttributeType type) const {
    for (const auto& a : attributes)
      if (a.name == name && a.type == type) return a;
    // A read the schema does not declare is a bug in this library, not in the model.
    throw std::logic_error(std::string(op) + " reads attribute '" + name + "', which its schema does not declare with that type");
  }
};

class AttributeReader {
 public:
  // Checks the conditional requirements at once, so a missing attribute is named before any other work.
  AttributeReader(const Ort::ConstKernelInfo& info, const OpSchema& schema) : info_(info), schema_(schema) {
    for (const auto& spec : schema_.attributes) {
      if (spec.when.empty() || Has(spec.name.c_str())) continue;
      const std::string mode = String(spec.when.c_str());
      for (const auto& m : spec.when_values)
        if (m == mode) throw OpError("attribute '" + spec.name + "' is missing (" + spec.when + " '" + mode + "' needs it)");
    }
  }

  // Whether the node carries the attribute (any type).
  bool Has(const char* name) const { return Read<int64_t>(name) || Read<float>(name) || Read<std::string>(name); }

  int64_t Int(const char* name) const {
    const AttributeSpec& spec = schema_.Find(name, AttributeType::Int);
    const auto value = Read<int64_t>(name);
    if (!value) return Missing(spec, spec.int_default);
    if (*value < spec.lo || *value > spec.hi)
      throw OpError("attribute '" + spec.name + "' must be " + std::to_string(spec.lo) + ".." + std::to_string(spec.hi) + ", not " +
                    std::to_string(*value));
    return *value;
  }

  float Float(const char* name) const {
    const AttributeSpec& spec = schema_.Find(name, AttributeType::Float);
    const auto value = Read<float>(name);
    if (!value) return Missing(spec, spec.float_default);
    const float v = *value;
    const bool ok = std::isfinite(v) && (spec.domain == FloatDomain::Any || (spec.domain == FloatDomain::Positive && v > 0) ||
                                         (spec.domain == FloatDomain::NonNegative && v >= 0) || (spec.domain == FloatDomain::NonZero && v != 0));
    if (!ok) throw OpError("attribute '" + spec.name + "' must be " + Describe(spec.domain) + ", not " + FormatFloat(v));
    return v;
  }

  std::string String(const char* name) const {
    const AttributeSpec& spec = schema_.Find(name, AttributeType::String);
    const auto value = Read<std::string>(name);
    if (!value) return Missing(spec, spec.values.front());
    for (const auto& allowed : spec.values)
      if (*value == allowed) return *value;
    std::string list;
    for (size_t i = 0; i < spec.values.size(); ++i)
      list += (i == 0 ? "" : i + 1 == spec.values.size() ? " or " : ", ") + ("'" + spec.values[i] + "'");
    throw OpError("attribute '" + spec.name + "' must be " + list + ", not '" + *value + "'");
  }

  static const char* Describe(FloatDomain d) {
    switch (d) {
      case FloatDomain::Positive: return "positive and finite";
      case FloatDomain::NonNegative: return "finite and ≥ 0";
      case FloatDomain::NonZero: return "finite and non-zero";
      default: return "finite";
    }
  }

 private:
  template <typename T>
  struct Maybe {
    bool present = false;
    T value{};
    explicit operator bool() const { return present; }
    const T& operator*() const { return value; }
    const T* operator->() const { return &value; }
  };

  template <typename T>
  Maybe<T> Read(const char* name) const {
    Maybe<T> m;
    try {
      m.value = info_.GetAttribute<T>(name);
      m.present = true;
    } catch (const Ort::Exception&) {
    }
    return m;
  }

  template <typename T>
  T Missing(const AttributeSpec& spec, T fallback) const {
    if (Has(spec.name.c_str()))
      throw OpError("attribute '" + spec.name + "' must be " +
                    (spec.type == AttributeType::Int ? "an int" : spec.type == AttributeType::Float ? "a float" : "a string"));
    if (spec.required) throw OpError("attribute '" + spec.name + "' is missing");
    return fallback;
  }

  Ort::ConstKernelInfo info_;
  const OpSchema& schema_;
};

// One line per attribute, tab-separated: op, "attribute", name, type (int | float | string),
// required | optional, the default ("-" when required), the accepted values (lo..hi; positive,
// non-negative, non-zero or any; a|b|c) and when an optional one is required (mode=a|b, or "-").
// OnnxViTQOpsSchemas returns these for every op, with its inputs and outputs.
inline std::string ListSchema(const OpSchema& schema) {
  std::string out;
  for (const auto& a : schema.attributes) {
    std::string type, fallback = "-", accepted;
    switch (a.type) {
      case AttributeType::Int:
        type = "int";
        if (!a.required) fallback = std::to_string(a.int_default);
        accepted = std::to_string(a.lo) + ".." + std::to_string(a.hi);
        break;
      case AttributeType::Float: {
        type = "float";
        if (!a.required) fallback = FormatFloat(a.float_default);
        const char* domains[] = {"any", "positive", "non-negative", "non-zero"};
        accepted = domains[static_cast<int>(a.domain)];
        break;
      }
      case AttributeType::String:
        type = "string";
        if (!a.required) fallback = a.values.front();
        for (size_t i = 0; i < a.values.size(); ++i) accepted += (i == 0 ? "" : "|") + a.values[i];
        break;
    }
    std::string when = "-";
    if (!a.when.empty()) {
      when = a.when + "=";
      for (size_t i = 0; i < a.when_values.size(); ++i) when += (i == 0 ? "" : "|") + a.when_values[i];
    }
    out += std::string(schema.op) + "\tattribute\t" + a.name + "\t" + type + "\t" + (a.required ? "required" : "optional") + "\t" + fallback +
           "\t" + accepted + "\t" + when + "\n";
  }
  return out;
}

}  // namespace onnxvitq
