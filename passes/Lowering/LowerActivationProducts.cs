using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>
/// Recipe pass <c>lower-native-products</c>, after <c>lower-native</c>: the attention products (Q·Kᵀ and softmax·V)
/// whose two operands have uniform per-tensor quantizers become <c>com.onnxvitq.QuantizedMatMul</c>
/// (runtime-ops), which quantizes both float operands itself and multiplies the codes as integers.
/// The operands' uses by the product leave the plan, so the emitter writes no QuantizeLinear /
/// DequantizeLinear for them. Other operand quantizers (log2 or TanQ post-Softmax, per-token…)
/// keep the portable form, and the report says which.
/// Not part of <c>--format native</c>: on both machines measured (AVX2, AVX-512 VNNI) the op was
/// slower than ONNX Runtime's own fused QDQ product (u8×u8 MLAS kernels) on the DeiT-Tiny Q·Kᵀ at
/// batch 8, though faster or level on the other shapes (BENCHMARKS.md, speed sections), so a
/// recipe opts in by naming it.
/// </summary>
internal sealed class LowerActivationProducts : IPass, IPassContract
{
    public const string OpType = "QuantizedMatMul";
    public string Name => "lower-native-products";
    public IReadOnlyList<Type> Requires => [typeof(QuantizersFitted)];
    public IReadOnlyList<Type> Produces => [];

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var graph = model.Graph;
        int lowered = 0;
        var kept = new List<string>();
        foreach (var node in graph.Nodes.ToList())
        {
            if (node.IsRemoved) continue;
            var product = ActivationProduct.Of(node, plan);
            if (product is null) continue;
            if (Reason(product) is { } reason)
            {
                kept.Add($"{node.Name} ({reason})");
                continue;
            }
            var left = (UniformQuantizer)product.Left.Parameters!;
            var right = (UniformQuantizer)product.Right.Parameters!;
            var output = node.Output();
            var replacement = graph.AddNode(OpType, [node.Input(0), node.Input(1)], [$"{output.Name}_native"],
                [.. OperandAttributes("a", left), .. OperandAttributes("b", right)], NativeOps.Domain, graph.UniqueName($"{node.Name}_native"), before: node).Output();
            NodeReplacement.Replace(graph, output, replacement, [node]);
            string detail = $"{node.Name}: {NativeOps.Domain}.{OpType} ({left.Bits}-bit × {right.Bits}-bit codes)";
            plan.Update((product.Left with { Uses = product.Left.Uses.Where(u => u != new Use(node, 0)).ToList() }).WithNote(detail));
            plan.Update((product.Right with { Uses = product.Right.Uses.Where(u => u != new Use(node, 1)).ToList() }).WithNote(detail));
            lowered++;
        }
        if (lowered > 0) OpsetImports.Ensure(model, NativeOps.Domain, 1);
        context.Info($"{lowered} attention product(s) lowered to {NativeOps.Domain}.{OpType}" + (kept.Count == 0 ? "" : $"; {kept.Count} kept portable: {string.Join("; ", kept)}"));
        return new PassResult(lowered > 0);
    }

    /// <summary>Why the product stays portable, or null when the op runs it.</summary>
    private static string? Reason(ActivationProduct product)
    {
        foreach (var (site, which) in new[] { (product.Left, "left"), (product.Right, "right") })
            if (site.Parameters is not UniformQuantizer { Axis: null })
                return $"{which} operand: {site.Parameters!.Kind} ({site.Parameters.Granularity}) has no native product";
        return null;
    }

    /// <summary>The op's attributes for operand <paramref name="p"/> ("a" or "b"): the quantizer's
    /// scale, zero point and code range in its own integer domain.</summary>
    public static IEnumerable<AttributeValue> OperandAttributes(string p, UniformQuantizer q) =>
    [
        AttributeValue.Float($"{p}_scale", q.Scales[0]),
        AttributeValue.Int($"{p}_zero_point", q.ZeroPoints[0]),
        AttributeValue.Int($"{p}_qmin", q.QMin),
        AttributeValue.Int($"{p}_qmax", q.QMax),
    ];
}
