// com.onnxvitq QuantizedLinear: Y = dequant(quant(X) · W) + bias (+ outlier residual), optionally GELU(·).
//
// Inputs: X float [..., K]; W uint8 packed (kernels.h layout, int8 or int4 codes);
//         weight_scale float [N] or [1]; bias float [N] (optional); layernorm scale γ [K] and
//         bias β [K] (optional: with γ, each row of X is LayerNorm-ed, ε = layernorm_epsilon, before
//         it is quantized — LayerNormalization → linear in one op; static or token activations
//         without outliers). All but X must be initializers (read once when the kernel is created).
// Attributes: k, n, weight_bits (8 | 4); activation ("token" | "static" | "shift-log2");
//   token: activation_bits (codes in [0, 2^bits − 1] per row), outlier_alpha (> 0: |x| ≥ α is
//          taken out of the quantized row and multiplied in float with the dequantized weight);
//   static: activation_scale, activation_zero_point, activation_qmin, activation_qmax (u8 domain:
//          a symmetric int8 quantizer is passed with +128 on zero point and bounds);
//   shift-log2: activation_scale s, activation_shift (m − ε), activation_epsilon ε, activation_bits k
//          (ADFQ-ViT's post-GELU quantizer: x̂ = s·2^(−q) + m − ε, q = clamp(round(−log2(max(x − m + ε, ε)/s)),
//          0, 2^k − 1)); the powers of two are multiplied as int16 values 2^(top − q) − 2^(top−1) (top ≤ 15, from k),
//          levels q > top (below s·2^(−top−1)) added in float from the dequantized weights;
//   epilogue ("none" | "gelu"): "gelu" applies the exact GELU, x·½(1 + erf(x/√2)), to Y — the
//          fc1 → GELU of a transformer MLP in one op, without a second pass over Y.
#pragma once
#include "onnxruntime_c_api.h"

namespace onnxvitq {

// The op's registration record (one per process; the kernel type stays private to the .cc).
OrtCustomOp* QuantizedLinearCustomOp();

struct OpSchema;
// Its attributes (attributes.h), as the kernel reads them.
const OpSchema& QuantizedLinearSchema();

}  // namespace onnxvitq
