// Hands a GEMM the int8 codes of a run of weight panels: the packed bytes themselves for int8,
// a thread-local unpacked copy for int4 (unpacked once per task, reused by every row tile).
#pragma once
#include <vector>
#include "quantize_rows.h"

namespace onnxvitq {
// Internal linkage on purpose: every ISA file compiles its own copy with its own target flags;
// shared inline definitions would be merged by the linker and could run AVX-512 code on the
// scalar path.
namespace {

template <typename Unpack>
inline const int8_t* PanelCodes(const PackedWeights& w, int64_t p0, int64_t p1, Unpack unpack) {
  if (w.bits == 8) return reinterpret_cast<const int8_t*>(w.data + p0 * w.PanelBytes());
  thread_local std::vector<int8_t> scratch;
  const size_t need = static_cast<size_t>((p1 - p0) * (w.kp / kGroup) * kBlockCodes) + 64;
  if (scratch.size() < need) scratch.resize(need);
  // 64-byte alignment for the vector loads.
  auto* base = reinterpret_cast<int8_t*>((reinterpret_cast<uintptr_t>(scratch.data()) + 63) & ~uintptr_t{63});
  unpack(w, p0, p1, base);
  return base;
}

}  // namespace
}  // namespace onnxvitq
