// Library entry point: ONNX Runtime calls RegisterCustomOps when a session registers this file
// (SessionOptions.RegisterCustomOpLibrary in .NET).
#include <cstring>
#include <string>
#include "onnxruntime_cxx_api.h"

#include "attributes.h"

#include "kernels.h"
#include "quantized_linear.h"
#include "quantized_matmul.h"
#include "quantized_attention.h"

namespace {
constexpr const char* kDomain = "com.onnxvitq";
}

extern "C" {

__attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    // A runtime older than the headers we were built against: nothing to report the error with
    // but the oldest API, which every runtime serves.
    const OrtApi* oldest = api_base->GetApi(1);
    return oldest == nullptr ? nullptr : oldest->CreateStatus(ORT_FAIL, "libonnxvitq_ops was built for a newer ONNX Runtime API than this runtime provides");
  }
  Ort::InitApi(api);
  OrtCustomOpDomain* domain = nullptr;
  if (OrtStatus* s = api->CreateCustomOpDomain(kDomain, &domain)) return s;
  if (OrtStatus* s = api->CustomOpDomain_Add(domain, onnxvitq::QuantizedLinearCustomOp())) return s;
  if (OrtStatus* s = api->CustomOpDomain_Add(domain, onnxvitq::QuantizedMatMulCustomOp())) return s;
  if (OrtStatus* s = api->CustomOpDomain_Add(domain, onnxvitq::QuantizedAttentionCustomOp())) return s;
  // The domain must outlive every session that uses it; sessions do not own it, so it is kept
  // for the life of the process (one small object per registration).
  return api->AddCustomOpDomain(options, domain);
}

// The kernel path a new kernel would use in this process (for reports and tests).
__attribute__((visibility("default"))) const char* OnnxViTQOpsKernelPath() {
  const char* error = nullptr;
  const onnxvitq::Kernels* k = onnxvitq::SelectKernels(&error);
  return k == nullptr ? error : k->name;
}

// Measured int8 VNNI peak of the calling thread's core in GOPS; 0 when the CPU lacks AVX-512 VNNI.
__attribute__((visibility("default"))) double OnnxViTQOpsVnniPeakGops(double seconds) {
  const char* paths = onnxvitq::SupportedPaths();
  return paths[0] == 'a' && paths[3] == '5' ? onnxvitq::VnniPeakGops(seconds) : 0.0;
}

// Measured AVX2 instruction peak of the calling thread's core in GOPS (kinds: kernels.h); 0 without AVX2.
__attribute__((visibility("default"))) double OnnxViTQOpsAvx2PeakGops(double seconds, int kind) {
  return std::strstr(onnxvitq::SupportedPaths(), "avx2") != nullptr && kind >= 0 && kind <= 2 ? onnxvitq::Avx2PeakGops(seconds, kind) : 0.0;
}

__attribute__((visibility("default"))) const char* OnnxViTQOpsSupportedPaths() { return onnxvitq::SupportedPaths(); }

// Every op's schema, one line per input, output and attribute (attributes.h: ListSchema), so that
// a test can check the C# declarations of the same ops against what the kernels read.
__attribute__((visibility("default"))) const char* OnnxViTQOpsSchemas() {
  static const std::string text = [] {
    auto type = [](ONNXTensorElementDataType t) {
      return t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ? "float" : t == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 ? "uint8" : "other";
    };
    auto signature = [&](const OrtCustomOp* op) {
      std::string out;
      const std::string name = op->GetName(op);
      for (size_t i = 0; i < op->GetInputTypeCount(op); ++i)
        out += name + "\tinput\t" + std::to_string(i) + "\t" + type(op->GetInputType(op, i)) + "\t" +
               (op->GetInputCharacteristic(op, i) == INPUT_OUTPUT_OPTIONAL ? "optional" : "required") + "\n";
      for (size_t i = 0; i < op->GetOutputTypeCount(op); ++i)
        out += name + "\toutput\t" + std::to_string(i) + "\t" + type(op->GetOutputType(op, i)) + "\t" +
               (op->GetOutputCharacteristic(op, i) == INPUT_OUTPUT_OPTIONAL ? "optional" : "required") + "\n";
      return out;
    };
    return signature(onnxvitq::QuantizedLinearCustomOp()) + onnxvitq::ListSchema(onnxvitq::QuantizedLinearSchema()) +
           signature(onnxvitq::QuantizedMatMulCustomOp()) + onnxvitq::ListSchema(onnxvitq::QuantizedMatMulSchema()) +
           signature(onnxvitq::QuantizedAttentionCustomOp()) + onnxvitq::ListSchema(onnxvitq::QuantizedAttentionSchema());
  }();
  return text.c_str();
}

}  // extern "C"
