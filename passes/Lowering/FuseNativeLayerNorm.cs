using OnnxViTQ.Quantization;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>
/// Recipe pass <c>fuse-native-layernorm</c> (part of <c>--format native</c>, after the emitter): a
/// <c>LayerNormalization</c> over the last axis with constant γ, β whose values only a
/// <c>com.onnxvitq.QuantizedLinear</c> reads (a ViT block's qkv and fc1; Shape ops may read its
/// shape) moves into that op as its
/// layernorm inputs (also through a Transpose that keeps the last axis): the op normalises each
/// row in a cache-resident buffer and quantizes it, so the normalised tensor is never written out
/// and read back. Not with outlier-split or shift-log2
/// inputs, whose float residuals read the normalised values.
/// </summary>
internal static class FuseNativeLayerNorm
{
    private sealed record Fusion(Node Norm, Node Linear, Node? Between);

    public static RewriteRulesPass Pass()
    {
        var rule = new MatchRule<Fusion>("fuse-native-layernorm",
            (_, node, _) => node is { OpType: "LayerNormalization", Domain: "" } && Fusable(node, out var between) is { } linear
                ? RuleAttempt.Matched(new Fusion(node, linear, between))
                : RuleAttempt.NotHere,
            Fuse);
        return new RewriteRulesPass("fuse-native-layernorm", [rule], new PassContract([Stages.NativeLinears, Stages.PortableEmitted], []))
        {
            Summary = done => $"{done.Total} LayerNormalization(s) fused into the following {NativeOps.Domain}.{NativeLinearLowering.OpType}",
        };
    }

    private static void Fuse(Fusion f, Rewriter r)
    {
        var (norm, linear, between) = (f.Norm, f.Linear, f.Between);
        int k = (int)linear.GetInt("k", 0), n = (int)linear.GetInt("n", 0);
        var gamma = norm.Input(1)!;
        var beta = norm.Input(2) ?? r.AddConstant($"{norm.Name}_beta", Tensor.FromFloats([k], new float[k]));
        var bias = linear.Input(3) ?? r.AddConstant($"{linear.Name}_bias", Tensor.FromFloats([n], new float[n]));
        // LayerNorm works row by row, so a Transpose that keeps the last axis commutes with it:
        // only values move (same shape and type).
        (between ?? linear).SetInput(0, norm.Input(0));
        linear.SetInput(3, bias);
        linear.SetInput(4, gamma);
        linear.SetInput(5, beta);
        linear.SetAttribute(NativeOpSchemas.QuantizedLinear.Float("layernorm_epsilon", norm.GetFloat("epsilon", 1e-5f)));
        norm.Output().ReplaceUsesWith(norm.Input(0)!);  // what is left are Shape readers: same shape
        r.Graph.RemoveNode(norm);
    }

    /// <summary>The op that can take the LayerNorm in, or null; <paramref name="between"/>: a
    /// Transpose between them that keeps the last axis last (torchvision's attention transposes
    /// tokens and batch before the qkv projection).</summary>
    private static Node? Fusable(Node norm, out Node? between)
    {
        between = null;
        var y = norm.Output();
        if (y.IsGraphOutput || norm.Outputs.Skip(1).Any(o => o is not null && (o.Consumers.Count > 0 || o.IsGraphOutput))) return null;
        // Shape readers see the same shape after the rewrite; any other reader needs the normalised values.
        static List<Use> ValueReaders(Value v) => v.Consumers.Where(c => c.Node is not { OpType: "Shape", Domain: "" }).ToList();
        if (ValueReaders(y) is [{ Node: { OpType: "Transpose", Domain: "" } transpose, InputIndex: 0 }] && !transpose.Output().IsGraphOutput
            && transpose.Attribute("perm")?.AsInts() is { Count: > 0 } perm && perm[^1] == perm.Count - 1)
        {
            between = transpose;
            y = transpose.Output();
        }
        if (ValueReaders(y) is not [{ Node: { OpType: NativeLinearLowering.OpType, Domain: NativeOps.Domain } linear, InputIndex: 0 }]) return null;
        if (linear.Inputs.Count > 4 || linear.Attribute("activation")?.AsString() is not ("static" or "token") || linear.GetFloat("outlier_alpha", 0) > 0) return null;
        long axis = norm.GetInt("axis", -1);
        long k = linear.GetInt("k", 0);
        if (!(axis == -1 || (norm.Input(0)!.Type is TensorTypeInfo { Shape: { } shape } && axis == shape.Count - 1))) return null;
        bool IsVector(Value? v) => v is not null && Constants.TryGetTensor(v, out var t) && t.ElementCount == k && t.DataType == DataType.Float;
        if (!IsVector(norm.Input(1)) || (norm.Input(2) is { } b && !IsVector(b))) return null;
        return linear;
    }
}
