using OnnxViTQ.Quantization;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>When <see cref="StoreWeightsUnsigned"/> re-stores int8 weights.</summary>
internal enum UnsignedWeightsPolicy
{
    /// <summary>Only where ONNX Runtime's u8×s8 kernels saturate on this CPU (<see cref="OrtInt8Kernels"/>).</summary>
    WhenSaturating,
    Always,
    Never,
}

/// <summary>
/// <c>--format ort</c> on a CPU whose ONNX Runtime u8×s8 kernels saturate: int8 weight codes that
/// meet u8 activation codes in an integer kernel are stored as uint8 with 128 added to codes and
/// zero points, so ONNX Runtime picks its u8×u8 kernels, which are exact. The dequantized weights
/// are unchanged: (q + 128) − (z + 128) = q − z. Rewritten: a <c>DequantizeLinear(W_int8, s, z)</c>
/// whose every reader is a MatMul, Gemm or Conv with a uint8 DequantizeLinear on its other data
/// input (the QDQ ONNX Runtime fuses), <c>com.microsoft.MatMulIntegerToFloat</c> with uint8 A and
/// int8 B, and <c>com.microsoft.DynamicQuantizeMatMul</c> (uint8 A at run time). Weights whose
/// codes cannot overflow a pair sum (|q| ≤ 64) are left as they are.
/// </summary>
internal sealed class StoreWeightsUnsigned(UnsignedWeightsPolicy policy = UnsignedWeightsPolicy.WhenSaturating) : IPass
{
    public string Name => "store-weights-unsigned";
    public PassContract Contract { get; } = new([Stages.PortableEmitted], []);

    public PassResult Run(Model model, PassContext context)
    {
        bool active = policy switch
        {
            UnsignedWeightsPolicy.Always => true,
            UnsignedWeightsPolicy.Never => false,
            _ => OrtInt8Kernels.SaturatesU8S8,
        };
        if (!active) return new PassResult(false);
        var graph = model.Graph;
        int rewritten = 0;
        foreach (var node in graph.Nodes.ToList())
        {
            if (node.IsRemoved) continue;
            (int codes, int zero)? at = node switch
            {
                { OpType: "DequantizeLinear", Domain: "" or "ai.onnx" } when FeedsOnlyU8Kernels(node) => (0, 2),
                { OpType: "MatMulIntegerToFloat", Domain: OrtContribLowering.Domain } when IsUInt8(node.Input(0)) => (1, 5),
                // Its activation is quantized to uint8 at run time.
                { OpType: "DynamicQuantizeMatMul", Domain: OrtContribLowering.Domain } => (1, 3),
                _ => null,
            };
            if (at is { } slots && Rewrite(graph, node, slots.codes, slots.zero)) rewritten++;
        }
        if (rewritten > 0) context.Info($"{rewritten} int8 weight(s) stored as uint8 + 128 (ONNX Runtime's u8×s8 kernels saturate on this CPU; its u8×u8 kernels are exact)");
        return new PassResult(rewritten > 0);
    }

    /// <summary>Replaces the node's int8 codes and zero point by uint8 copies shifted by 128
    /// (new initializers: the originals may have other readers).</summary>
    private static bool Rewrite(Graph graph, Node node, int codesIndex, int zeroIndex)
    {
        if (node.Input(codesIndex) is not { } codesValue || !Constants.TryGetTensor(codesValue, out var codes) || codes.DataType != DataType.Int8) return false;
        var zeroValue = node.Input(zeroIndex);
        Tensor? zero = null;
        if (zeroValue is not null && (!Constants.TryGetTensor(zeroValue, out zero) || zero.DataType != DataType.Int8)) return false;
        var q = codes.AsSpan<sbyte>();
        bool overflows = false;
        var z = zero is null ? [] : zero.AsSpan<sbyte>();
        foreach (var c in q)
            if (OrtInt8Kernels.PairCanOverflow(byte.MaxValue, c)) { overflows = true; break; }
        if (!overflows) return false;
        var shifted = new byte[q.Length];
        for (int i = 0; i < q.Length; i++) shifted[i] = (byte)(q[i] + 128);
        // A missing zero point is 0 (int8); the uint8 form needs an explicit 128.
        long[] zeroDims = zero is null ? [] : zero.Dims.ToArray();
        var zeroShifted = new byte[zero is null ? 1 : z.Length];
        for (int i = 0; i < zeroShifted.Length; i++) zeroShifted[i] = (byte)((zero is null ? 0 : z[i]) + 128);
        node.SetInput(codesIndex, graph.AddInitializer(graph.UniqueName($"{codesValue.Name}_u8"), Tensor.From<byte>(DataType.UInt8, codes.Dims, shifted)));
        while (node.Inputs.Count <= zeroIndex) node.AddInput(null);
        node.SetInput(zeroIndex, graph.AddInitializer(graph.UniqueName($"{zeroValue?.Name ?? node.Name + "_zero_point"}_u8"), Tensor.From<byte>(DataType.UInt8, zeroDims, zeroShifted)));
        return true;
    }

    /// <summary>Every reader of the DequantizeLinear's output is a MatMul/Gemm/Conv whose other data
    /// input is dequantized from uint8 codes (so ONNX Runtime fuses the pair into a u8×s8 kernel).</summary>
    private static bool FeedsOnlyU8Kernels(Node dq)
    {
        var output = dq.Output();
        if (output.IsGraphOutput || output.Consumers.Count == 0) return false;
        foreach (var use in output.Consumers)
        {
            var consumer = use.Node;
            if (consumer.OpType is not ("MatMul" or "Gemm" or "Conv") || consumer.Domain is not ("" or "ai.onnx")) return false;
            if (use.InputIndex > 1) return false;
            var other = consumer.Input(1 - use.InputIndex);
            if (other?.Producer is not { OpType: "DequantizeLinear" } otherDq || !IsUInt8(otherDq.Input(0))) return false;
        }
        return true;
    }

    /// <summary>uint8 by its type, its constant, or the op that makes it (QuantizeLinear takes its
    /// zero point's type; Clip keeps its input's).</summary>
    private static bool IsUInt8(Value? v)
    {
        if (v is null) return false;
        if (v.Type is { } type) return type.ElementType == DataType.UInt8;
        if (Constants.TryGetTensor(v, out var t)) return t.DataType == DataType.UInt8;
        return v.Producer switch
        {
            { OpType: "QuantizeLinear" } q => IsUInt8(q.Input(2)),
            { OpType: "Clip" } c => IsUInt8(c.Input(0)),
            _ => false,
        };
    }
}
