// com.onnxvitq QuantizedAttention: the core of one multi-head self-attention, from the packed
// q|k|v projection to the heads' outputs, with the four attention operands quantized per tensor
// as the portable graph quantizes them:
//   Q' = Q / q_divisor, S = dq(q(Q'))·dq(q(K))ᵀ, P = softmax(S), O = dq(q(P))·dq(q(V)),
// both products on the linear layers' integer GEMM (u8 codes × int8 values, summed exactly in
// int32: vpdpbusd on AVX-512 VNNI), the softmax and its quantization in one pass between them.
//
// Input: qkv float [T, B, 3·D] (layout "tbd": token-major, batch inner — the qkv projection of
//   PyTorch's nn.MultiheadAttention as exported, Q, K, V the three consecutive D-wide parts, head h
//   the columns h·d .. h·d + d − 1 of each, d = D / heads).
// Attributes: heads; layout ("tbd", the only one); q_divisor (default 1; the exporter's
//   Div by √d before the query's quantizer); for p in {q, k, p, v}: p_scale, p_zero_point,
//   p_qmin, p_qmax (QuantizedMatMul's operand attributes).
// Output: float [T, B·heads, d], O of batch b and head h at [t, b·heads + h, :] — the layout of
//   the exporter's Transpose after softmax·V, which the reshape to [T·B, D] then reads as is.
#pragma once
#include "onnxruntime_c_api.h"

namespace onnxvitq {

OrtCustomOp* QuantizedAttentionCustomOp();

struct OpSchema;
// Its attributes (attributes.h), as the kernel reads them.
const OpSchema& QuantizedAttentionSchema();

}  // namespace onnxvitq
