using OnnxViTQ.Ir;
using OnnxViTQ.Patterns;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>
/// Recipe pass <c>lower-native-products</c>, after <c>lower-native</c>: the attention products (Q·Kᵀ and softmax·V)
/// whose right operand has a uniform per-tensor quantizer and whose left one a uniform per-tensor
/// or a log2 one (ADFQ-ViT's post-Softmax) become <c>com.onnxvitq.QuantizedMatMul</c>
/// (runtime-ops), which quantizes both float operands itself and multiplies them as integers
/// (log2 values as int16 powers of two). The operands' uses by the product leave the plan, so the
/// emitter writes no quantizer for them. Other operand quantizers (log√2 or TanQ post-Softmax,
/// per-token…) keep the portable form, and the report says which.
/// Option <c>left</c>: <c>any</c> (default) or <c>log2</c> (only products with a log2 left operand).
/// <c>--format native</c> runs it with <c>left=log2</c>: the portable log2 quantizer is a chain of
/// float ops ONNX Runtime cannot fuse, which the op replaces. Uniform × uniform products of the
/// attentions <c>fuse-native-attention</c> recognises run inside QuantizedAttention (it runs first);
/// for the others they stay opt-in (a recipe names the pass): in most runs on the CPUs measured
/// (AVX2, AVX-512 VNNI) the op was not faster than ONNX Runtime's own fused QDQ product (u8×u8
/// MLAS kernels) on the DeiT-Tiny Q·Kᵀ at batch 8, though faster or level on the other shapes
/// (BENCHMARKS.md, speed sections).
/// </summary>
internal static class LowerActivationProducts
{
    public const string OpType = "QuantizedMatMul";
    private static NativeOpSchema Op => NativeOpSchemas.QuantizedMatMul;

    public static RewriteRulesPass Pass(bool log2LeftOnly = false)
    {
        var rule = new MatchRule<ActivationProduct>("lower-native-products",
            (_, node, context) => ActivationProduct.Of(node, context.Get<QuantizationPlan>()) is not { } product ? RuleAttempt.NotHere
                // left=log2 (what --format native adds) leaves the other products alone, unlisted.
                : log2LeftOnly && Form(product.Left) is not Log2Form ? RuleAttempt.NotHere
                : Reason(product) is { } reason ? RuleAttempt.Decline(reason, product)
                : RuleAttempt.Matched(product),
            Lower) { Opsets = [NativeOpSchema.Opset] };
        return new RewriteRulesPass("lower-native-products", [rule], new PassContract([Stages.Fitted], [], [Stages.PortableEmitted]))
        {
            // As part of --format native (left=log2) on a recipe without log2 probabilities: nothing to say.
            Summary = done => log2LeftOnly && done.Total == 0 ? null
                : $"{done.Total} attention product(s) lowered to {NativeOps.Domain}.{OpType}" +
                  (done.Declined.Count == 0 ? "" : $"; {done.Declined.Count} kept portable: {string.Join("; ", done.Declined.Select(d => $"{d.Node.Name} ({d.Reason})"))}"),
        };
    }

    private static void Lower(ActivationProduct product, Rewriter r)
    {
        var node = product.Node;
        var left = Form(product.Left)!;
        var right = (StaticGridForm)Form(product.Right)!;
        var output = node.Output();
        var leftAttributes = left is Log2Form log ? Log2OperandAttributes(log) : OperandAttributes("a", (StaticGridForm)left);
        var replacement = Op.Node(r, [node.Input(0), node.Input(1)], $"{output.Name}_native", [.. leftAttributes, .. OperandAttributes("b", right)],
            node.Graph.UniqueName($"{node.Name}_native")).Output();
        r.ReplaceOutput(output, replacement, [node]);
        string detail = $"{node.Name}: {NativeOps.Domain}.{OpType} ({left.Bits}-bit {(left is Log2Form ? "log2" : "uniform")} × {right.Bits}-bit codes)";
        r.Consumed(product.Left.Value, new Use(node, 0), detail);
        r.Consumed(product.Right.Value, new Use(node, 1), detail);
    }

    /// <summary>Why the product stays portable, or null when the op runs it.</summary>
    private static string? Reason(ActivationProduct product)
    {
        if (Form(product.Left) is not (Log2Form or StaticGridForm))
            return $"left operand: {product.Left.Parameters!.Kind} ({product.Left.Parameters.Granularity}) has no native product";
        if (Form(product.Right) is not StaticGridForm)
            return $"right operand: {product.Right.Parameters!.Kind} ({product.Right.Parameters.Granularity}) has no native product";
        return null;
    }

    /// <summary>The site's native form, or null.</summary>
    internal static NativeActivationForm? Form(QuantizationSite site) => (site.Parameters as INativeActivation)?.NativeForm;

    /// <summary>The op's attributes for a log2-quantized left operand (a_kind "log2"): the
    /// quantizer's scale (its largest level) and bits (the last code is zero).</summary>
    public static IEnumerable<AttributeValue> Log2OperandAttributes(Log2Form q) =>
    [
        Op.String("a_kind", "log2"),
        Op.Float("a_scale", q.Scale),
        Op.Int("a_bits", q.Bits),
    ];

    /// <summary>The op's attributes for operand <paramref name="p"/> ("a" or "b"): the quantizer's
    /// scale, zero point and code range in its own integer domain.</summary>
    public static IEnumerable<AttributeValue> OperandAttributes(string p, StaticGridForm q) =>
    [
        AttributeValue.Float($"{p}_scale", q.Scale),
        AttributeValue.Int($"{p}_zero_point", q.ZeroPoint),
        AttributeValue.Int($"{p}_qmin", q.QMin),
        AttributeValue.Int($"{p}_qmax", q.QMax),
    ];  // checked against the schema of whichever op takes them (QuantizedMatMul's a, b; QuantizedAttention's q, k, p, v)

    /// <summary>The same for a fitted quantizer whose native form is a static grid.</summary>
    public static IEnumerable<AttributeValue> OperandAttributes(string p, FittedQuantizer q) =>
        OperandAttributes(p, (q as INativeActivation)?.NativeForm as StaticGridForm ?? throw new ArgumentException($"{q} is not a static grid"));
}
