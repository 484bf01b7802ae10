// Chooses the kernel table. CPU features are read once (at library load); ONNXVITQ_ISA is read
// when a kernel is created so that tests can run every path in one process.
#include <cstdlib>
#include <cstring>
#include <string>
#include "kernels.h"

namespace onnxvitq {
namespace {

struct Cpu {
  bool avx2 = false, avx512vnni = false;
  Cpu() {
    __builtin_cpu_init();
    avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    avx512vnni = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512vnni");
  }
};

const Cpu& ThisCpu() {
  static const Cpu cpu;
  return cpu;
}

const Cpu& kLoadTimeCpu = ThisCpu();

}  // namespace

int PackedWeights::Code(int64_t kk, int64_t nn) const {
  const int64_t p = nn / kPanel, c = nn % kPanel, g = kk / kGroup, j = kk % kGroup;
  const uint8_t* block = data + p * PanelBytes() + g * BlockBytes();
  const int64_t i = c * kGroup + j;
  if (bits == 8) return static_cast<int8_t>(block[i]);
  const int nibble = i < kBlockCodes / 2 ? (block[i] & 15) : (block[i - kBlockCodes / 2] >> 4);
  return (nibble ^ 8) - 8;
}

const char* SupportedPaths() {
  const Cpu& cpu = kLoadTimeCpu;
  if (cpu.avx512vnni) return "avx512vnni,avx2,scalar";
  if (cpu.avx2) return "avx2,scalar";
  return "scalar";
}

const Kernels* SelectKernels(const char** error) {
  const Cpu& cpu = kLoadTimeCpu;
  const char* forced = std::getenv("ONNXVITQ_ISA");
  if (forced == nullptr || *forced == '\0') {
    if (cpu.avx512vnni) return &Avx512VnniKernels();
    if (cpu.avx2) return &Avx2Kernels();
    return &ScalarKernels();
  }
  if (std::strcmp(forced, "scalar") == 0) return &ScalarKernels();
  if (std::strcmp(forced, "avx2") == 0 && cpu.avx2) return &Avx2Kernels();
  if (std::strcmp(forced, "avx512vnni") == 0 && cpu.avx512vnni) return &Avx512VnniKernels();
  static thread_local std::string message;
  message = std::string("ONNXVITQ_ISA='") + forced + "' is not a path this CPU can run (supported: " + SupportedPaths() + ")";
  *error = message.c_str();
  return nullptr;
}

}  // namespace onnxvitq
