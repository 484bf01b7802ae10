using OnnxViTQ.Ir;
using OnnxViTQ.Patterns;

namespace OnnxViTQ.Passes.Canonicalize;

/// <summary>
/// Rewrites that bring exports into the form the later passes expect, without changing what
/// the model computes. PyTorch exports made without constant folding feed weights to MatMul
/// through <c>Transpose(W)</c> (and shared parameters through <c>Identity(W)</c>); folding them
/// makes the weights constants again, so they are quantized as weights (per channel, int8 storage)
/// rather than calibrated as activations.
/// </summary>
internal static class CanonicalizationRules
{
    /// <summary>Largest constant folded, in elements: bounds compile-time work and memory.</summary>
    public const long MaxFoldElements = 1L << 26;

    /// <summary><c>Transpose(C)</c> with C constant → the transposed constant.</summary>
    public static readonly RewriteRule FoldConstantTranspose = new(
        "fold-constant-transpose",
        Pattern.Op("Transpose", Pattern.Constant("c")).Named("op"),
        m => CheckFoldable(m, out _),
        (m, r) =>
        {
            CheckFoldable(m, out var c);
            var op = m.Node("op");
            var folded = TensorOps.Transpose(c, op.Attribute("perm")?.AsInts());
            r.Replace(op.Output(), r.AddConstant(op.Output().Name, folded));
            r.RemoveDead(op);
        });

    /// <summary><c>Identity(C)</c> with C constant → C.</summary>
    public static readonly RewriteRule FoldConstantIdentity = new(
        "fold-constant-identity",
        Pattern.Op("Identity", Pattern.Constant("c")).Named("op"),
        m => m.Node("op").Output().IsGraphOutput ? "its output is a graph output" : null,
        (m, r) =>
        {
            var op = m.Node("op");
            r.Replace(op.Output(), m.Value("c"));
            r.RemoveDead(op);
        });

    /// <summary>
    /// A <c>Constant</c> node holding a float tensor of rank ≥ 1 → an initializer of the same name.
    /// paddle2onnx, tf2onnx and older exporters store weights that way; as initializers they are
    /// weights to every later pass (folds rewrite them, searches and lowerings quantize them).
    /// Scalars and integer tensors (shapes, axes) stay nodes: nothing quantizes them.
    /// </summary>
    public static readonly RewriteRule ConstantNodeToInitializer = new(
        "constant-node-to-initializer",
        Pattern.Op("Constant").Named("op"),
        m => m.Node("op") switch
        {
            var op when op.Output().IsGraphOutput => "its output is a graph output",
            var op when op.Attribute("value") is not { Kind: AttributeKind.Tensor } => "it holds no tensor 'value'",
            var op when op.Attribute("value")!.AsTensor() is { } t && (!t.DataType.IsFloatingPoint() || t.Rank == 0) => "not a float tensor of rank ≥ 1",
            _ => null,
        },
        (m, r) =>
        {
            var op = m.Node("op");
            var output = op.Output();
            string name = output.Name;
            var initializer = r.AddConstant(name + "_weight", op.Attribute("value")!.AsTensor());
            r.Replace(output, initializer);
            r.RemoveDead(op);
            r.Graph.Rename(initializer, name);
        });

    public static IReadOnlyList<RewriteRule> All { get; } = [ConstantNodeToInitializer, FoldConstantTranspose, FoldConstantIdentity];

    /// <summary>The rewrites of pass <c>canonicalize</c> (<see cref="Canonicalize"/>), after its opset conversion.</summary>
    public static RewriteRulesPass Rules() => new("canonicalize", All, new PassInfra.PassContract([], [Quantization.Stages.Canonical], [Quantization.Stages.SitesSelected]));

    /// <summary>Pass <c>canonicalize</c>: opset conversion, then the rewrites.</summary>
    public static Canonicalize Pass(string modelName) => new(modelName);

    private static string? CheckFoldable(Match m, out Tensor c)
    {
        Constants.TryGetTensor(m.Value("c"), out c);
        if (m.Node("op").Output().IsGraphOutput) return "its output is a graph output";
        int bits = c.DataType.BitWidth();
        if (bits == 0 || bits % 8 != 0) return $"{c.DataType.OnnxName()} tensors are not folded";
        if (c.ElementCount > MaxFoldElements) return $"constant has {c.ElementCount} elements (limit {MaxFoldElements})";
        return null;
    }
}
