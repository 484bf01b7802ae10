// com.onnxvitq QuantizedMatMul: Y = dequant(quant(A)) · dequant(quant(B)), the attention
// products Q·Kᵀ and softmax·V with both operands quantized per tensor, multiplied as integers.
//
// Inputs: A float [..., M, K]; B float [..., K, N]; leading axes broadcast as MatMul's do.
// Attributes, for each operand p in {a, b}: p_scale (> 0), p_zero_point, p_qmin, p_qmax (the
//   quantizer's own integer codes, e.g. 0..255 or −128..127; at most 256 levels): code =
//   clamp(roundeven(x / scale) + zero_point, qmin, qmax), value = scale·(code − zero_point) —
//   the portable QuantizeLinear/DequantizeLinear pair of the same quantizer.
// Or, with a_kind = "log2" (softmax·V under ADFQ-ViT's post-Softmax quantizer), A by a_scale and
//   a_bits (2..8): q = max(round(−log2(max(x, 1e-30) / a_scale)), 0), value a_scale·2^(−q), the
//   last code 2^a_bits − 1 and past it exactly 0 — the portable log2 quantizer. The values enter
//   the integer product as int16 powers of two 2^(top − q) (top ≤ 15, lowered for large K so the
//   int32 sums stay exact); levels below 2^(−top) are added in float.
// Output: float [..., M, N], scale_a·scale_b·Σ_k (code_a − z_a)(code_b − z_b), summed exactly.
#pragma once
#include "onnxruntime_c_api.h"

namespace onnxvitq {

OrtCustomOp* QuantizedMatMulCustomOp();

struct OpSchema;
// Its attributes (attributes.h), as the kernel reads them.
const OpSchema& QuantizedMatMulSchema();

}  // namespace onnxvitq
