using OnnxViTQ.Ir;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>
/// Linear layers as one of ONNX Runtime's own contrib ops (domain com.microsoft), which a stock
/// ONNX Runtime runs. The weights go in as the plan's integer codes and per-channel scales, so
/// they dequantize exactly as in the portable model. MatMulIntegerToFloat reads the activation's
/// codes from the same QuantizeLinear (and Clip) the portable model has: the same integer
/// arithmetic. MatMulNBits (accuracy level 4: int8 per block of K) and DynamicQuantizeMatMul
/// (uint8 per tensor) re-quantize the activation as the portable quantizer leaves it — an extra
/// rounding the agreement tests measure.
/// </summary>
internal sealed class OrtContribLowering(OrtContribKernel kernel) : ILinearLowering
{
    public const string Domain = "com.microsoft";

    /// <summary>K block of MatMulNBits: per-channel scales repeat in every block.</summary>
    public const int BlockSize = 32;

    public string Name => "ort";
    public IReadOnlyList<OpsetImport> Opsets { get; } = [new(Domain, 1)];

    public string? Declines(LinearLayer layer, Model model) =>
        kernel == OrtContribKernel.MatMulIntegerToFloat && layer.Activation.Parameters is not IIntegerGrid { Axis: null }
            ? $"{layer.Activation.Parameters?.Kind} activations have no integer codes for MatMulIntegerToFloat"
            : null;

    public LoweredLayer Emit(LinearLayer layer, Rewriter r, out string detail)
    {
        var graph = layer.Node.Graph;
        string prefix = layer.Node.Name;
        var scales = PerChannel(layer.WeightScales, layer.N);
        Node node;
        if (kernel == OrtContribKernel.MatMulIntegerToFloat)
        {
            var aq = (IIntegerGrid)layer.Activation.Parameters!;
            var storage = aq.Symmetric ? DataType.Int8 : DataType.UInt8;
            Tensor Code(int v) => storage == DataType.Int8 ? Tensor.From<sbyte>(storage, [], [(sbyte)v]) : Tensor.From<byte>(storage, [], [(byte)v]);
            var aScale = r.AddConstant($"{prefix}_a_scale", Tensor.FromFloats([], [aq.Scales[0]]));
            var aZero = r.AddConstant($"{prefix}_a_zero_point", Code(aq.ZeroPoints[0]));
            var codes = r.AddNode("QuantizeLinear", [layer.Input, aScale, aZero], [$"{prefix}_a_codes"]).Output();
            if (aq.Bits < 8)
                codes = r.AddNode("Clip", [codes, r.AddConstant($"{prefix}_a_qmin", Code(aq.QMin)),
                    r.AddConstant($"{prefix}_a_qmax", Code(aq.QMax))], [$"{prefix}_a_codes_{aq.Bits}bit"]).Output();
            var b = r.AddConstant($"{prefix}_mi_weight", Tensor.From<sbyte>(DataType.Int8, [layer.K, layer.N], WeightCodes(layer)));
            var bScale = r.AddConstant($"{prefix}_mi_scale", Tensor.FromFloats([layer.N], scales));
            var bZero = r.AddConstant($"{prefix}_mi_zero_point", Tensor.From<sbyte>(DataType.Int8, [layer.N], new sbyte[layer.N]));
            var inputs = new List<Value?> { codes, b, aScale, bScale, aZero, bZero };
            if (layer.Bias is { } mb) inputs.Add(r.AddConstant($"{prefix}_bias", Tensor.FromFloats([mb.Length], mb)));
            node = r.AddNode("MatMulIntegerToFloat", inputs, [$"{layer.Output.Name}_mi"], [], Domain, graph.UniqueName($"{prefix}_mi"));
            detail = $"{Domain}.MatMulIntegerToFloat: the activation's {aq.Bits}-bit codes × int8 weights ({layer.WeightQuantizer.Bits}-bit codes), bias fused";
            return new LoweredLayer(node.Output(), null);
        }
        if (kernel == OrtContribKernel.FloatWeights)
        {
            // W[k, n] = code·scale, the float DequantizeLinear computes, so the MatMul is the plan's.
            var w = new float[layer.K * layer.N];
            for (int k = 0; k < layer.K; k++)
                for (int n = 0; n < layer.N; n++) w[k * layer.N + n] = layer.Code(k, n) * scales[n];
            var weight = r.AddConstant($"{prefix}_dequantized_weight", Tensor.FromFloats([layer.K, layer.N], w));
            var matmul = r.AddNode("MatMul", [layer.Input, weight], [$"{layer.Output.Name}_float"], [], "", graph.UniqueName($"{prefix}_float"));
            var y = matmul.Output();
            if (layer.Bias is { } fb)
                y = r.AddNode("Add", [y, r.AddConstant($"{prefix}_bias", Tensor.FromFloats([fb.Length], fb))],
                    [$"{layer.Output.Name}_float_biased"]).Output();
            detail = $"MatMul with the dequantized weights stored as float ({layer.WeightQuantizer.Bits}-bit codes × scales)";
            return new LoweredLayer(y, matmul);
        }
        if (kernel == OrtContribKernel.MatMulNBits)
        {
            int bits = layer.WeightQuantizer.Bits <= 4 ? 4 : 8;
            int blocks = (layer.K + BlockSize - 1) / BlockSize, blob = BlockSize * bits / 8;
            var packed = new byte[layer.N * blocks * blob];
            int offset = 1 << (bits - 1); // the op's default zero point: codes are stored unsigned
            for (int n = 0; n < layer.N; n++)
                for (int k = 0; k < blocks * BlockSize; k++)
                {
                    int stored = (k < layer.K ? layer.Code(k, n) : 0) + offset;
                    int at = n * blocks * blob;
                    if (bits == 8) packed[at + k] = (byte)stored;
                    else packed[at + k / 2] |= (byte)(k % 2 == 0 ? stored : stored << 4); // low nibble first along K
                }
            var blockScales = new float[layer.N * blocks];
            for (int n = 0; n < layer.N; n++) Array.Fill(blockScales, scales[n], n * blocks, blocks);
            var b = r.AddConstant($"{prefix}_nbits_weight", Tensor.From<byte>(DataType.UInt8, [layer.N, blocks, blob], packed));
            var s = r.AddConstant($"{prefix}_nbits_scales", Tensor.FromFloats([blockScales.Length], blockScales));
            node = r.AddNode("MatMulNBits", [layer.Input, b, s], [$"{layer.Output.Name}_nbits"],
                [AttributeValue.Int("K", layer.K), AttributeValue.Int("N", layer.N), AttributeValue.Int("bits", bits),
                 AttributeValue.Int("block_size", BlockSize), AttributeValue.Int("accuracy_level", 4)],
                Domain, graph.UniqueName($"{prefix}_nbits"));
            detail = $"{Domain}.MatMulNBits: {bits}-bit weights ({layer.WeightQuantizer.Bits}-bit codes), blocks of {BlockSize}, int8 compute";
        }
        else
        {
            var b = r.AddConstant($"{prefix}_dq_weight", Tensor.From<sbyte>(DataType.Int8, [layer.K, layer.N], WeightCodes(layer)));
            var s = r.AddConstant($"{prefix}_dq_scale", Tensor.FromFloats([layer.N], scales));
            node = r.AddNode("DynamicQuantizeMatMul", [layer.Input, b, s], [$"{layer.Output.Name}_dqmm"], [],
                Domain, graph.UniqueName($"{prefix}_dqmm"));
            detail = $"{Domain}.DynamicQuantizeMatMul: int8 weights ({layer.WeightQuantizer.Bits}-bit codes), activations re-quantized to uint8 per tensor";
        }
        var output = node.Output();
        if (layer.Bias is { } bias)
        {
            var biasValue = r.AddConstant($"{prefix}_bias", Tensor.FromFloats([bias.Length], bias));
            output = r.AddNode("Add", [output, biasValue], [$"{layer.Output.Name}_biased"]).Output();
        }
        return new LoweredLayer(output, node);
    }

    /// <summary>W's integer codes as [K, N].</summary>
    private static sbyte[] WeightCodes(LinearLayer layer)
    {
        var codes = new sbyte[layer.K * layer.N];
        for (int k = 0; k < layer.K; k++)
            for (int n = 0; n < layer.N; n++) codes[k * layer.N + n] = (sbyte)layer.Code(k, n);
        return codes;
    }

    private static float[] PerChannel(float[] scales, int n) => scales.Length == n ? scales : Enumerable.Repeat(scales[0], n).ToArray();
}

/// <summary>The ONNX Runtime forms of a quantized linear layer <c>--format ort</c> chooses from.</summary>
internal enum OrtContribKernel
{
    /// <summary>QuantizeLinear/DequantizeLinear around the MatMul, which ONNX Runtime fuses into
    /// its integer MatMul (the portable form).</summary>
    Qdq,

    /// <summary>QuantizeLinear (the portable model's activation codes) then
    /// com.microsoft.MatMulIntegerToFloat with int8 weights: the portable arithmetic in one op.</summary>
    MatMulIntegerToFloat,

    /// <summary>The weights dequantized into a float initializer and a plain MatMul: exact for any
    /// activation quantizer. For a float (fake-quant) activation the QDQ form is not, because ONNX
    /// Runtime turns DequantizeLinear → MatMul into MatMulNBits, which re-quantizes the activation.</summary>
    FloatWeights,

    /// <summary>com.microsoft.MatMulNBits (int4/int8 block weights, accuracy level 4).</summary>
    MatMulNBits,

    /// <summary>com.microsoft.DynamicQuantizeMatMul (int8 weights, uint8 per-tensor activations at run time).</summary>
    DynamicQuantizeMatMul,
}
