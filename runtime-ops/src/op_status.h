// What every op of the library shares at the C boundary: errors are thrown inside as OpError
// and returned to ONNX Runtime as an OrtStatus naming the op and node; no C++ exception crosses
// the C ABI.
#pragma once
#include "onnxruntime_cxx_api.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace onnxvitq {

struct OpError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline std::string Dims(const std::vector<int64_t>& shape) {
  std::string s;
  for (auto d : shape) s += (s.empty() ? "" : ",") + std::to_string(d);
  return "[" + s + "]";
}

// Runs a kernel's Compute, turning what it throws into a status "<Op> '<node>': <message>".
template <typename Kernel>
OrtStatusPtr GuardedCompute(const char* op, const Kernel& kernel, OrtKernelContext* context) noexcept {
  try {
    kernel.Compute(context);
    return nullptr;
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, (std::string(op) + " '" + kernel.node + "': " + e.what()).c_str());
  } catch (...) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, (std::string(op) + " '" + kernel.node + "': unknown error").c_str());
  }
}

// Creates a kernel, turning what its constructor throws into a status naming the node.
template <typename Kernel>
OrtStatusPtr GuardedCreate(const char* op, const OrtApi& api, const OrtKernelInfo* info, void** kernel) noexcept {
  try {
    *kernel = new Kernel(api, info);
    return nullptr;
  } catch (const std::exception& e) {
    std::string node;
    try {
      node = Ort::ConstKernelInfo(info).GetNodeName();
    } catch (...) {
    }
    return api.CreateStatus(ORT_INVALID_ARGUMENT, (std::string(op) + " '" + node + "': " + e.what()).c_str());
  } catch (...) {
    return api.CreateStatus(ORT_FAIL, (std::string(op) + ": unknown error while creating the kernel").c_str());
  }
}

}  // namespace onnxvitq
