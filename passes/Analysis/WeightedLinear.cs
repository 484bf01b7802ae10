using OnnxViTQ.Ir;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// A planned MatMul/Gemm Y = X·W as the compile-time searches and error measurements see it:
/// X a quantized activation, W a quantized constant weight read as [K, N] whatever its stored
/// layout (Gemm transB = 1 stores [N, K]). Products run on <see cref="Gemm"/>.
/// </summary>
internal sealed record WeightedLinear(Node Node, QuantizationSite Activation, QuantizationSite Weight, float[] W, long[] Shape, int K, int N, bool Transposed)
{
    /// <summary>The layer at <paramref name="node"/>, or null when it is not a planned MatMul/Gemm
    /// with a quantized activation input and a quantized constant 2-D weight.</summary>
    public static WeightedLinear? Of(Node node, QuantizationPlan plan)
    {
        if (node.OpType is not ("MatMul" or "Gemm") || node.Domain.Length > 0) return null;
        if (node.OpType == "Gemm" && node.GetInt("transA", 0) != 0) return null;
        var x = node.Input(0);
        var w = node.Input(1);
        if (x is null || w is null || !plan.TryGet(x, out var activation) || activation.IsWeight || activation.Parameters is null) return null;
        if (!plan.TryGet(w, out var weight) || !weight.IsWeight || weight.Parameters is null) return null;
        return Of(node, activation, weight);
    }

    /// <summary>The layer at <paramref name="node"/> with these input sites, fitted or not (null
    /// when the weight is not a constant 2-D tensor).</summary>
    public static WeightedLinear? Of(Node node, QuantizationSite activation, QuantizationSite weight)
    {
        var wt = WeightTensor.Read(weight);
        if (wt.Shape.Length != 2) return null;
        bool transposed = node.OpType == "Gemm" && node.GetInt("transB", 0) != 0;
        int k = (int)(transposed ? wt.Shape[1] : wt.Shape[0]);
        int n = (int)(transposed ? wt.Shape[0] : wt.Shape[1]);
        return new WeightedLinear(node, activation, weight, wt.Values, wt.Shape, k, n, transposed);
    }

    /// <summary>X[rows, K] · W' where W' has this layer's stored layout (W itself, or a simulated copy).</summary>
    public float[] Multiply(float[] x, int rows, float[] weightValues) =>
        Transposed ? Gemm.MultiplyTransposed(x, rows, K, weightValues, N) : Gemm.Multiply(x, rows, K, weightValues, N);

    /// <summary>W with <paramref name="quantizer"/> applied (quantize-dequantize), in the stored layout.</summary>
    public float[] Simulated(FittedQuantizer quantizer)
    {
        var copy = (float[])W.Clone();
        quantizer.Simulate(copy, Shape);
        return copy;
    }
}
