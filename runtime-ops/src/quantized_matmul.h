// com.onnxvitq QuantizedMatMul: Y = dequant(quant(A)) · dequant(quant(B)), the attention
// products Q·Kᵀ and softmax·V with both operands quantized per tensor, multiplied as integers.
//
// Inputs: A float [..., M, K]; B float [..., K, N]; leading axes broadcast as MatMul's do.
// Attributes, for each operand p in {a, b}: p_scale (> 0), p_zero_point, p_qmin, p_qmax (the
//   quantizer's own integer codes, e.g. 0..255 or −128..127; at most 256 levels): code =
//   clamp(roundeven(x / scale) + zero_point, qmin, qmax), value = scale·(code − zero_point) —
//   the portable QuantizeLinear/DequantizeLinear pair of the same quantizer.
// Output: float [..., M, N], scale_a·scale_b·Σ_k (code_a − z_a)(code_b − z_b), summed exactly.
#pragma once
#include "onnxruntime_c_api.h"

namespace onnxvitq {

OrtCustomOp* QuantizedMatMulCustomOp();

}  // namespace onnxvitq
