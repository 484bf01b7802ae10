using OnnxViTQ.Ir;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Reconstruction;

/// <summary>
/// Reverse-mode differentiation of an ONNX graph, emitted as more ONNX nodes in the same graph so
/// that ONNX Runtime runs forward and backward in one session (its kernels and threads do the
/// work). From a scalar <c>loss</c>, each node between the requested values and the loss gets its
/// vector-Jacobian product from <see cref="VjpRules"/>, in reverse topological order; gradients
/// reaching a value along several paths are summed. A node on such a path whose op has no rule
/// makes the whole build fail with <see cref="NoGradientRuleException"/> naming it (a module's
/// optimization then falls back to its unoptimized plan), before anything is added to the graph.
/// Gradients flow only through an op's differentiable inputs (a Reshape's data, not its shape), so
/// the integer shape arithmetic of dynamic exports (Shape → Gather → Concat → Reshape) is not on
/// any path. Shapes: broadcasting ops need to know which axes were broadcast; the caller's probe
/// runs the graph once for the values on the path (<see cref="ValueShapes.Run"/>: axes of size 1
/// and ranks are what matter, not the batch size).
/// </summary>
internal sealed class GradientBuilder
{
    private readonly Dictionary<Value, Value> _grads = [];
    private readonly HashSet<Value> _needed;

    private GradientBuilder(Graph graph, ValueShapes shapes, HashSet<Value> needed)
    {
        Graph = graph;
        Shapes = shapes;
        _needed = needed;
    }

    public Graph Graph { get; }
    public ValueShapes Shapes { get; }

    /// <summary>Adds to <paramref name="graph"/> the nodes computing d <paramref name="loss"/> / d v for
    /// each v of <paramref name="wrt"/> (graph inputs or initializers) and returns them, in order. A value the loss
    /// does not depend on gets zeros.</summary>
    public static IReadOnlyList<Value> Build(Graph graph, Value loss, IReadOnlyList<Value> wrt, Func<IReadOnlyList<Value>, ValueShapes> probe)
    {
        var order = Topological(graph);
        // Values that depend on a requested one through differentiable inputs (forward), and nodes the loss depends on (backward).
        var dependsOnWrt = new HashSet<Value>(wrt);
        foreach (var node in order)
            if (VjpRules.DifferentiableInputs(node).Any(i => dependsOnWrt.Contains(i)))
                foreach (var o in node.Outputs) if (o is not null) dependsOnWrt.Add(o);
        var lossNeeds = new HashSet<Value> { loss };
        var onPath = new List<Node>();
        for (int i = order.Count - 1; i >= 0; i--)
        {
            var node = order[i];
            if (!node.Outputs.Any(o => o is not null && lossNeeds.Contains(o))) continue;
            var differentiable = VjpRules.DifferentiableInputs(node).ToList();
            foreach (var input in differentiable) lossNeeds.Add(input);
            if (differentiable.Any(dependsOnWrt.Contains)) onPath.Add(node);
        }
        foreach (var node in onPath)
            if (!VjpRules.Has(node))
                throw new NoGradientRuleException(node);
        var needed = new HashSet<Value>(dependsOnWrt.Where(lossNeeds.Contains));
        // Shapes of what the rules read: differentiable inputs and the outputs gradients arrive at (not, say, Dropout's mask).
        var shapes = probe(onPath.SelectMany(n => VjpRules.DifferentiableInputs(n).Concat(n.Outputs.OfType<Value>().Where(lossNeeds.Contains)))
            .Where(v => v.Initializer is null).Distinct().ToList());
        var builder = new GradientBuilder(graph, shapes, needed);
        builder._grads[loss] = builder.Op("ConstantOfShape", [builder.Op("Shape", [loss])], AttributeValue.Tensor("value", Tensor.FromFloats([1], [1f])));
        foreach (var node in onPath)  // already in reverse topological order
        {
            var outputGrads = node.Outputs.Select(o => o is not null && builder._grads.TryGetValue(o, out var g) ? g : null).ToArray();
            if (outputGrads.All(g => g is null)) continue;
            VjpRules.Emit(builder, node, outputGrads);
        }
        return wrt.Select(v => builder._grads.TryGetValue(v, out var g) ? g : builder.Op("Mul", [v, builder.Scalar(0f)])).ToList();
    }

    /// <summary>Whether the loss's gradient is wanted for <paramref name="v"/> (it lies between a requested value and the loss).</summary>
    public bool Needs(Value? v) => v is not null && _needed.Contains(v);

    /// <summary>Adds <paramref name="grad"/> to <paramref name="v"/>'s gradient (paths add up).</summary>
    public void Accumulate(Value? v, Func<Value> grad)
    {
        if (!Needs(v)) return;
        var g = grad();
        _grads[v!] = _grads.TryGetValue(v!, out var existing) ? Op("Add", [existing, g]) : g;
    }

    public Value Op(string opType, Value?[] inputs, params AttributeValue[] attributes) =>
        Graph.AddNode(opType, inputs, [$"grad_{opType}"], attributes).Output();

    public Value Scalar(float v) => Graph.AddInitializer(Graph.UniqueName("grad_const"), Tensor.Scalar(v));

    public Value Ints(params long[] v) => Graph.AddInitializer(Graph.UniqueName("grad_ints"), Tensor.FromInt64s([v.Length], v));

    public int Rank(Value v) => Shape(v).Length;

    public long[] Shape(Value v) =>
        v.Initializer is { } t ? t.Dims.ToArray() : Shapes.TryGet(v, out var s) ? s : throw new InvalidOperationException($"no shape known for '{v.Name}'");

    /// <summary><paramref name="g"/> (shaped like <paramref name="output"/>) summed over the axes along which
    /// <paramref name="input"/> was broadcast to it, shaped like <paramref name="input"/>.</summary>
    public Value Unbroadcast(Value g, Value output, Value input)
    {
        var outShape = Shape(output);
        var inShape = Shape(input);
        int lead = outShape.Length - inShape.Length;
        var axes = Enumerable.Range(0, lead).Select(a => (long)a)
            .Concat(Enumerable.Range(0, inShape.Length).Where(i => inShape[i] == 1 && outShape[i + lead] != 1).Select(i => (long)(i + lead))).ToArray();
        if (axes.Length == 0) return g;
        var summed = Op("ReduceSum", [g, Ints(axes)], AttributeValue.Int("keepdims", 1));
        return Op("Reshape", [summed, Op("Shape", [input])]);
    }

    /// <summary><paramref name="v"/> with its last two axes swapped.</summary>
    public Value SwapLastTwo(Value v, int rank) =>
        Op("Transpose", [v], AttributeValue.Ints("perm", Enumerable.Range(0, rank - 2).Select(i => (long)i).Concat([rank - 1L, rank - 2L])));

    private static List<Node> Topological(Graph graph)
    {
        var placed = new HashSet<Node>();
        var result = new List<Node>();
        var pending = new List<Node>(graph.Nodes);
        while (pending.Count > 0)
        {
            int before = result.Count;
            foreach (var node in pending.ToList())
                if (node.Inputs.All(i => i?.Producer is null || placed.Contains(i.Producer) || !ReferenceEquals(i.Producer.Graph, graph)))
                {
                    placed.Add(node);
                    result.Add(node);
                    pending.Remove(node);
                }
            if (result.Count == before) throw new OnnxViTQException($"graph '{graph.Name}' has a cycle: it cannot be differentiated");
        }
        return result;
    }
}

/// <summary>A node on the path from a requested value to the loss whose op has no gradient rule.</summary>
internal sealed class NoGradientRuleException(Node node)
    : OnnxViTQException($"no gradient rule for {node.OpType} (node '{node.Name}'{(node.Domain.Length > 0 ? $", domain {node.Domain}" : "")})")
{
    public Node Node { get; } = node;
}
