using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// Analysis: creates the <see cref="QuantizationPlan"/> with one site per tensor read by a float
/// MatMul, Gemm or Conv of the main graph — the linear layers, both attention products (Q·Kᵀ and
/// softmax·V) and the patch-embedding convolution. A constant input is a weight, quantized per
/// output channel: <c>MatMul(A[..,M,K], B[..,K,N])</c> → B along its last axis, A along its second
/// to last; <c>Gemm</c> → B along 0 with transB=1 else 1, A along 1 with transA=1 else 0;
/// <c>Conv</c> → W along 0. Activations start with role <c>other</c>; role tagging refines them.
/// </summary>
internal sealed class SelectQuantizationSites : IPass
{
    /// <summary>Ops whose presence means the model is already quantized.</summary>
    private static readonly HashSet<string> QuantizedOps =
        ["QuantizeLinear", "DequantizeLinear", "QLinearMatMul", "MatMulInteger", "QLinearConv", "ConvInteger", "DynamicQuantizeLinear"];

    public string Name => "select-sites";
    public PassContract Contract { get; } = new([], [Stages.SitesSelected]);

    public PassResult Run(Model model, PassContext context)
    {
        if (model.Graph.Nodes.FirstOrDefault(n => QuantizedOps.Contains(n.OpType)) is { } q)
            throw new OnnxViTQException($"the model is already quantized (node '{q.Name}' is {q.OpType}); quantize the float32 model instead");
        var uses = new List<(Value Value, Use Use, bool Weight, int? Axis)>();
        foreach (var node in model.Graph.Nodes)
        {
            if (node.Domain is not ("" or "ai.onnx") || node.OpType is not ("MatMul" or "Gemm" or "Conv")) continue;
            if (Describe(node) is { Count: > 0 } found) uses.AddRange(found);
        }
        var plan = new QuantizationPlan();
        foreach (var group in uses.GroupBy(u => u.Value))
        {
            bool weight = group.First().Weight;
            var axes = group.Select(u => u.Axis).Distinct().ToList();
            var site = new QuantizationSite
            {
                Value = group.Key,
                Uses = group.Select(u => u.Use).ToList(),
                Role = weight ? TensorRole.Weight : TensorRole.Other,
                // A weight shared by nodes that want different channel axes falls back to per tensor.
                ChannelAxis = weight && axes.Count == 1 ? axes[0] : null,
            };
            if (weight && axes.Count > 1) site = site.WithNote("read along different channel axes by its consumers: quantized per tensor");
            plan.Add(site);
        }
        if (plan.Sites.Count == 0) context.Warn("no float MatMul, Gemm or Conv nodes found: nothing will be quantized");
        context.Set(plan);
        return PassResult.Unchanged;
    }

    private static List<(Value, Use, bool, int?)> Describe(Node node)
    {
        var result = new List<(Value, Use, bool, int?)>(2);
        bool conv = node.OpType == "Conv";
        for (int i = 0; i < 2; i++)
        {
            var v = node.Inputs[i]!;
            if (Constants.TryGetTensor(v, out var w))
            {
                if (w.DataType != DataType.Float) return []; // already integer or another float type: leave the node alone
                result.Add((v, new Use(node, i), true, WeightAxis(node, i, w.Rank)));
            }
            else
            {
                if (conv && i == 1) return []; // a convolution with computed weights is left alone
                if (v.Type is { } t && t.ElementType != DataType.Float) return [];
                result.Add((v, new Use(node, i), false, null));
            }
        }
        return result;
    }

    private static int? WeightAxis(Node node, int input, int rank)
    {
        if (node.OpType == "Conv") return 0;
        if (node.OpType == "Gemm")
            return input == 1 ? (node.GetInt("transB", 0) == 1 ? 0 : 1) : (node.GetInt("transA", 0) == 1 ? 1 : 0);
        if (rank < 2) return null; // a vector operand has one output channel: per tensor
        return input == 1 ? rank - 1 : rank - 2;
    }
}
