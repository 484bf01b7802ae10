using OnnxViTQ.Ir;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>
/// A quantized linear layer as lowerings see it: Y = X·W (+ b) with X a planned activation site
/// and W a planned weight site, from <c>MatMul</c> (with a following bias <c>Add</c> folded in)
/// or <c>Gemm</c> (transA = 0, alpha = beta = 1). W is read as [K, N] whatever its stored layout.
/// </summary>
internal sealed record LinearLayer(
    Node Node, Node? BiasAdd, Value Input, Value Output, QuantizationSite Activation, QuantizationSite Weight,
    IIntegerGrid WeightQuantizer, int K, int N, bool WeightTransposed, float[]? Bias)
{
    /// <summary>The signed integer code of W[k, n].</summary>
    public int Code(int k, int n) => WeightQuantizer.Codes![WeightTransposed ? n * K + k : k * N + n];

    /// <summary>Per-output-channel scales (length N), or one per-tensor scale.</summary>
    public float[] WeightScales => WeightQuantizer.Scales.ToArray();

    public string Name => Node.Name;

    /// <summary>The layer whose matmul is <paramref name="node"/>, or null when it is not one.</summary>
    public static LinearLayer? Match(Node node, QuantizationPlan plan)
    {
        if (node.OpType is not ("MatMul" or "Gemm") || node.Domain.Length > 0) return null; // not a MatMul/Gemm
        var x = node.Input(0);
        var w = node.Input(1);
        if (x is null || w is null) return null; // missing input
        if (!plan.TryGet(w, out var weight) || !weight.IsWeight || !weight.Uses.Contains(new Use(node, 1)))
            return null; // its second input is not a quantized weight
        if (!plan.TryGet(x, out var activation) || activation.IsWeight || !activation.Uses.Contains(new Use(node, 0)))
            return null; // its input is not a quantized activation
        if (weight.Parameters is not IIntegerGrid { Symmetric: true, Codes: not null } wq || wq.ZeroPoints.Any(z => z != 0))
            return null; // weight quantizer is not a symmetric integer grid with codes
        if (!Constants.TryGetTensor(w, out var wt) || wt.Rank != 2) return null; // the weight is not a constant matrix

        bool transposed = false;
        Value? biasValue = null;
        Node? biasAdd = null;
        if (node.OpType == "Gemm")
        {
            if (node.GetInt("transA", 0) != 0 || node.GetFloat("alpha", 1) != 1 || node.GetFloat("beta", 1) != 1)
                return null; // Gemm with transA or alpha/beta ≠ 1
            transposed = node.GetInt("transB", 0) != 0;
            biasValue = node.Input(2);
        }
        int k = (int)(transposed ? wt.Dims[1] : wt.Dims[0]);
        int n = (int)(transposed ? wt.Dims[0] : wt.Dims[1]);
        int channelAxis = transposed ? 0 : 1;
        if (wq.Axis is { } axis && axis != channelAxis) return null; // weight scales are not along the output axis
        if (wq.Axis is not null && wq.Scales.Count != n) return null; // weight scale count differs from the output width

        var output = node.Output();
        if (node.OpType == "MatMul" && output.Consumers.Count == 1 && !output.IsGraphOutput)
        {
            var add = output.Consumers[0].Node;
            if (add.OpType == "Add" && add.Domain.Length == 0 && add.Inputs.Count == 2)
            {
                var other = add.Input(output.Consumers[0].InputIndex == 0 ? 1 : 0);
                if (other is not null && Constants.TryGetTensor(other, out var bt) && bt.ElementCount == n && bt.Dims[^1] == n)
                {
                    biasAdd = add;
                    biasValue = other;
                    output = add.Output();
                }
            }
        }
        float[]? bias = null;
        if (biasValue is not null)
        {
            if (!Constants.TryGetTensor(biasValue, out var bt) || bt.ElementCount != n) return null; // the bias is not a constant of the output width
            bias = bt.ToFloats();
        }
        return new LinearLayer(node, biasAdd, x, output, activation, weight, wq, k, n, transposed, bias);
    }
}
