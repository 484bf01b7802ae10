using OnnxViTQ.Ir;
using OnnxViTQ.Patterns;

namespace OnnxViTQ.Passes.Analysis;

/// <summary>A LayerNorm as exported: the <c>LayerNormalization</c> op (opset 17, or ONNX
/// Runtime's contrib form) or the opset-13 decomposition
/// <c>Add(Mul(Div(Sub(x, ReduceMean(x)), Sqrt(Add(ReduceMean(Pow(Sub, 2)), ε))), γ), β)</c>.
/// <see cref="Gamma"/> and <see cref="Beta"/> are the affine constants (β may be absent);
/// <see cref="Root"/> is the node producing <see cref="Output"/>.</summary>
internal sealed record LayerNormMatch(Node Root, Value Input, Value Output, Value? Gamma, Value? Beta, Node? AffineMul, Node? AffineAdd)
{
    public bool Decomposed => Root.OpType != "LayerNormalization";
}

/// <summary>Recognisers for the vision-transformer building blocks in real exports.</summary>
internal static class ViTPatterns
{
    private static OpPattern CentredInput() =>
        Pattern.Op("Sub", Pattern.Any("x"), Pattern.Op("ReduceMean", Pattern.Any("x")).Where(SingleAxis, "reduces one axis").Named("mean")).Named("sub");

    private static readonly OpPattern Normalised =
        Pattern.Op("Div", CentredInput(),
            Pattern.Op("Sqrt",
                Pattern.Op("Add",
                    Pattern.Op("ReduceMean", Pattern.Op("Pow", CentredInput(), Pattern.Constant()).Named("pow")).Where(SingleAxis, "reduces one axis").Named("var"),
                    Pattern.Constant("eps")).Commutative()).Named("sqrt")).Named("div");

    private static readonly OpPattern Scaled = Pattern.Op("Mul", Normalised, Pattern.Constant("gamma")).Commutative().Named("mul");
    private static readonly OpPattern ScaledShifted = Pattern.Op("Add", Scaled, Pattern.Constant("beta")).Commutative().Named("add");

    private static bool SingleAxis(Node n) =>
        n.Attribute("axes") is { } a ? a.AsInts().Count == 1
        : n.Input(1) is { } axes && Constants.TryGetTensor(axes, out var t) && t.ElementCount == 1;

    /// <summary>The LayerNorm whose output <paramref name="node"/> produces, if it is one.</summary>
    public static LayerNormMatch? LayerNorm(Node node)
    {
        if (node.OpType == "LayerNormalization" && node.Domain is "" or "ai.onnx" or "com.microsoft")
            return new LayerNormMatch(node, node.Inputs[0]!, node.Output(), node.Input(1), node.Input(2), null, null);
        if (node.OpType == "Add" && ScaledShifted.MatchAt(node) is { Success: true, Match: { } full })
            return new LayerNormMatch(node, full.Value("x"), node.Output(), full.Value("gamma"), full.Value("beta"), full.Node("mul"), node);
        if (node.OpType == "Mul" && Scaled.MatchAt(node) is { Success: true, Match: { } scaled })
            return new LayerNormMatch(node, scaled.Value("x"), node.Output(), scaled.Value("gamma"), null, node, null);
        if (node.OpType == "Div" && Normalised.MatchAt(node) is { Success: true, Match: { } plain })
            return new LayerNormMatch(node, plain.Value("x"), node.Output(), null, null, null, null);
        return null;
    }

    /// <summary>True when <paramref name="node"/> outputs GELU(x): the <c>Gelu</c> op, ONNX
    /// Runtime's Gelu/FastGelu/BiasGelu, or the exported Erf form x·½(1 + erf(x/√2)) or Tanh form
    /// x·½(1 + tanh(√(2/π)(x + 0.044715x³))) in any operand order.</summary>
    public static bool IsGelu(Node node, out Value x)
    {
        x = null!;
        if (node.OpType is "Gelu" or "FastGelu" or "BiasGelu" or "QuickGelu")
        {
            x = node.Inputs[0]!;
            return true;
        }
        if (node.OpType != "Mul") return false;
        // x·(1 + erf(…)) scaled by ½ afterwards: the GELU is the outer product.
        if (node.Outputs[0] is { Consumers: [{ Node: { OpType: "Mul" } next }] } && next.Inputs.Any(i => i is not null && Constants.TryGetTensor(i, out _)))
            return false;
        // The product's factors: descend through Mul nodes read only by this product.
        var factors = new List<Value>();
        var stack = new Stack<(Value V, int Depth)>();
        foreach (var i in node.Inputs) if (i is not null) stack.Push((i, 0));
        while (stack.Count > 0)
        {
            var (v, depth) = stack.Pop();
            if (v.Producer is { OpType: "Mul" } m && depth < 2 && v.Consumers.Count == 1)
                foreach (var i in m.Inputs) { if (i is not null) stack.Push((i, depth + 1)); }
            else if (!Constants.TryGetTensor(v, out _)) factors.Add(v);
        }
        if (factors.Count != 2) return false;
        foreach (var (gate, input) in new[] { (factors[0], factors[1]), (factors[1], factors[0]) })
        {
            if (gate.Producer is not { OpType: "Add" } add) continue;
            var inner = add.Inputs.FirstOrDefault(i => i?.Producer?.OpType is "Erf" or "Tanh");
            if (inner is null || !add.Inputs.Any(i => i is not null && !ReferenceEquals(i, inner) && Constants.TryGetTensor(i, out _))) continue;
            if (DependsOn(inner.Producer!.Inputs[0]!, input, depth: 6))
            {
                x = input;
                return true;
            }
        }
        return false;
    }

    /// <summary>True when <paramref name="v"/> is computed from <paramref name="x"/> through
    /// elementwise arithmetic with constants (Div, Mul, Add, Pow) within <paramref name="depth"/> steps.</summary>
    private static bool DependsOn(Value v, Value x, int depth)
    {
        if (ReferenceEquals(v, x)) return true;
        if (depth == 0 || v.Producer is not { OpType: "Div" or "Mul" or "Add" or "Pow" or "Sub" } p) return false;
        return p.Inputs.Any(i => i is not null && DependsOn(i, x, depth - 1));
    }

    /// <summary>Ops that move or select data without changing values: a quantized tensor after
    /// them has the role of the tensor before them.</summary>
    public static bool IsDataMovement(Node n) => n.OpType is "Transpose" or "Reshape" or "Flatten" or "Squeeze" or "Unsqueeze"
        or "Slice" or "Gather" or "Split" or "Concat" or "Pad" or "Identity" or "Dropout" or "Cast" or "Expand" or "Tile";

    /// <summary>
    /// The node a tensor comes from, looking through data movement and (with
    /// <paramref name="throughConstantScaling"/>) multiplication, division or addition by a
    /// constant (the 1/√d of attention scores, a linear layer's bias). For Concat every dynamic
    /// input must come from the same node. Null when the value is a graph input or constant.
    /// </summary>
    public static Node? Source(Value v, bool throughConstantScaling)
    {
        for (int guard = 0; guard < 256; guard++)
        {
            var p = v.Producer;
            if (p is null) return null;
            if (p.OpType == "Concat")
            {
                var sources = p.Inputs.Where(i => i is not null && !Constants.TryGetTensor(i, out _))
                    .Select(i => Source(i!, throughConstantScaling)).Distinct().ToList();
                return sources.Count == 1 ? sources[0] : p;
            }
            if (IsDataMovement(p))
            {
                v = p.Inputs[0]!;
                continue;
            }
            if (throughConstantScaling && p.OpType is "Mul" or "Div" or "Add" or "Sub" && p.Inputs.Count == 2)
            {
                var dynamicInputs = p.Inputs.Where(i => i is not null && !Constants.TryGetTensor(i, out _)).ToList();
                if (dynamicInputs.Count == 1 && (p.OpType is "Mul" or "Add" || ReferenceEquals(dynamicInputs[0], p.Inputs[0])))
                {
                    v = dynamicInputs[0]!;
                    continue;
                }
            }
            return p;
        }
        return null;
    }

    /// <summary>True for a MatMul/Gemm whose second input is a float constant (a linear layer).</summary>
    public static bool IsLinear(Node n) =>
        n.OpType is "MatMul" or "Gemm" && n.Input(1) is { } w && Constants.TryGetTensor(w, out var t) && t.DataType == DataType.Float
        && !(n.Input(0) is { } a && Constants.TryGetTensor(a, out _));

    /// <summary>A MatMul of two computed tensors (attention products).</summary>
    public static bool IsActivationProduct(Node n) =>
        n.OpType == "MatMul" && n.Inputs.Take(2).All(i => i is not null && !Constants.TryGetTensor(i, out _));

    /// <summary>The Softmax that <paramref name="node"/>'s output reaches through score arithmetic
    /// (scaling, relative position bias, masks, reshapes), or null.</summary>
    public static Node? SoftmaxAfter(Node node)
    {
        var frontier = new Queue<(Node N, int Depth)>();
        frontier.Enqueue((node, 0));
        var seen = new HashSet<Node>();
        while (frontier.Count > 0)
        {
            var (n, depth) = frontier.Dequeue();
            foreach (var use in n.Outputs.OfType<Value>().SelectMany(o => o.Consumers))
            {
                var c = use.Node;
                if (!seen.Add(c)) continue;
                if (c.OpType == "Softmax") return c;
                if (depth < 6 && c.OpType is "Add" or "Mul" or "Div" or "Sub" or "Reshape" or "Where" or "Cast" or "Unsqueeze" or "Squeeze")
                    frontier.Enqueue((c, depth + 1));
            }
        }
        return null;
    }
}
