using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// Analysis: finds the inputs of every float MatMul and Gemm of the main graph — the linear
/// layers (activation × constant weight) and the attention products Q·Kᵀ and softmax·V
/// (activation × activation) — and publishes them as <see cref="QuantizationTargets"/>.
/// A constant input is a weight, quantized per output channel:
/// <c>MatMul(A[..,M,K], B[..,K,N])</c> → B along its last axis, A along its second to last;
/// <c>Gemm</c> → B along 0 with transB=1 else 1, A along 1 with transA=1 else 0.
/// </summary>
public sealed class SelectMatMulTargets : IPass
{
    private static readonly OpPattern MatMul = Pattern.Op("MatMul", Pattern.Any("a"), Pattern.Any("b")).Named("op");
    private static readonly OpPattern Gemm = Pattern.Op("Gemm", Pattern.Any("a"), Pattern.Any("b")).Named("op");

    /// <summary>Ops whose presence means the model is already quantized.</summary>
    private static readonly HashSet<string> QuantizedOps =
        ["QuantizeLinear", "DequantizeLinear", "QLinearMatMul", "MatMulInteger", "QLinearConv", "ConvInteger", "DynamicQuantizeLinear"];

    public string Name => "select-matmul-targets";

    public PassResult Run(Model model, PassContext context)
    {
        if (model.Graph.Nodes.FirstOrDefault(n => QuantizedOps.Contains(n.OpType)) is { } q)
            throw new OnnxViTQException($"the model is already quantized (node '{q.Name}' is {q.OpType}); quantize the float32 model instead");
        var targets = new List<QuantizationTarget>();
        foreach (var node in model.Graph.Nodes)
        {
            var match = MatMul.MatchAt(node);
            bool isGemm = false;
            if (!match.Success) { match = Gemm.MatchAt(node); isGemm = match.Success; }
            if (!match.Success) continue;
            if (Describe(node, isGemm) is { Count: > 0 } found) targets.AddRange(found);
        }
        if (targets.Count == 0) context.Warn("no float MatMul or Gemm nodes found: nothing will be quantized");
        context.Set(new QuantizationTargets(targets));
        return PassResult.Unchanged;
    }

    private static List<QuantizationTarget> Describe(Node node, bool isGemm)
    {
        var result = new List<QuantizationTarget>(2);
        for (int i = 0; i < 2; i++)
        {
            var v = node.Inputs[i]!;
            if (Constants.TryGetTensor(v, out var w))
            {
                if (w.DataType != DataType.Float) return []; // already integer or another float type: leave the node alone
                result.Add(new QuantizationTarget(node, i, TensorRole.Weight, WeightAxis(node, i, w.Rank, isGemm)));
            }
            else
            {
                if (v.Type is { } t && t.ElementType != DataType.Float) return [];
                result.Add(new QuantizationTarget(node, i, TensorRole.Activation, null));
            }
        }
        return result;
    }

    private static int? WeightAxis(Node node, int input, int rank, bool isGemm)
    {
        if (isGemm)
            return input == 1 ? (node.GetInt("transB", 0) == 1 ? 0 : 1) : (node.GetInt("transA", 0) == 1 ? 1 : 0);
        if (rank < 2) return null; // a vector operand has one output channel: per tensor
        return input == 1 ? rank - 1 : rank - 2;
    }
}
