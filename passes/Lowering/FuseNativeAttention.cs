using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>
/// Recipe pass <c>fuse-native-attention</c> (part of <c>--format native</c>, after <c>lower-native</c>):
/// the core of each multi-head self-attention in the form PyTorch's <c>nn.MultiheadAttention</c>
/// exports it — the packed q|k|v projection X [T, B, 3·D] sliced into thirds, each reshaped to
/// [T, B·H, d] and transposed to heads first, Q divided by a constant, Q·Kᵀ, Softmax, softmax·V,
/// transposed back to [T, B·H, d] — becomes one <c>com.onnxvitq.QuantizedAttention</c> when all four
/// product operands (Q, K, the probabilities, V) have uniform per-tensor quantizers. The op
/// quantizes them as the portable graph does and multiplies exactly in int32; the slices, reshapes,
/// transposes and the shape arithmetic feeding them go. Other forms (timm's 5-D reshape, Swin's
/// windows with relative position bias, log2 or TanQ probabilities) are left to the other passes.
/// </summary>
internal static class FuseNativeAttention
{
    public const string OpType = "QuantizedAttention";
    private static NativeOpSchema Op => NativeOpSchemas.QuantizedAttention;

    public static RewriteRulesPass Pass()
    {
        var rule = new MatchRule<Attention>("fuse-native-attention",
            (model, node, context) => node is { OpType: "Softmax", Domain: "" } && Match(node, context.Get<QuantizationPlan>()) is { } m && DeadWith(node.Graph, m) is { } removed
                ? RuleAttempt.Matched(m with { Removed = removed })
                : RuleAttempt.NotHere,
            Fuse) { Opsets = [NativeOpSchema.Opset] };
        return new RewriteRulesPass("fuse-native-attention", [rule], new PassContract([Stages.Fitted], [], [Stages.PortableEmitted]))
        {
            Summary = done => done.Total == 0 ? null : $"{done.Total} attention(s) fused into {NativeOps.Domain}.{OpType}",
        };
    }

    private static void Fuse(Attention m, Rewriter r)
    {
        var output = m.Output.Output();
        var softmax = m.Nodes[1];
        List<AttributeValue> attributes = [Op.Int("heads", m.Heads), Op.String("layout", "tbd"), Op.Float("q_divisor", m.QDivisor)];
        foreach (var (p, site) in new[] { ("q", m.Q), ("k", m.K), ("p", m.P), ("v", m.V) })
            attributes.AddRange(LowerActivationProducts.OperandAttributes(p, (StaticGridForm)LowerActivationProducts.Form(site)!));
        var replacement = Op.Node(r, [m.Qkv], $"{output.Name}_native", attributes, softmax.Graph.UniqueName($"{softmax.Name}_attention"), before: m.Scores).Output();
        r.ReplaceOutput(output, replacement, m.Removed!);
        string note = $"{softmax.Name}: fused into {NativeOps.Domain}.{OpType} ({m.Heads} heads)";
        r.Consumed(m.Q.Value, new Use(m.Scores, 0), note);
        r.Consumed(m.K.Value, new Use(m.Scores, 1), note);
        r.Consumed(m.P.Value, new Use(m.Context, 0), note);
        r.Consumed(m.V.Value, new Use(m.Context, 1), note);
    }

    /// <summary>One matched attention: the nodes from the slices of <see cref="Qkv"/> to the
    /// transpose after softmax·V (<see cref="Output"/>), and the four operand sites.</summary>
    private sealed record Attention(Value Qkv, Node Scores, Node Context, Node Output, List<Node> Nodes, long Heads, float QDivisor,
        QuantizationSite Q, QuantizationSite K, QuantizationSite P, QuantizationSite V)
    {
        /// <summary>The nodes the op replaces, readers first (<see cref="DeadWith"/>).</summary>
        public List<Node>? Removed { get; init; }
    }

    private static Attention? Match(Node softmax, QuantizationPlan plan)
    {
        long axis = softmax.GetInt("axis", -1);
        if (axis != -1 && axis != 2) return null;
        if (softmax.Input(0) is not { Producer: { } scores } scoreValue || scoreValue.Consumers.Count != 1 || scoreValue.IsGraphOutput) return null;
        var probabilities = softmax.Output();
        if (probabilities.Consumers.Count != 1 || probabilities.IsGraphOutput || probabilities.Consumers[0].InputIndex != 0) return null;
        var context = probabilities.Consumers[0].Node;
        if (ActivationProduct.Of(scores, plan) is not { } qk || ActivationProduct.Of(context, plan) is not { } pv) return null;
        foreach (var site in new[] { qk.Left, qk.Right, pv.Left, pv.Right })
            if (LowerActivationProducts.Form(site) is not StaticGridForm) return null;
        if (context.Output() is not { } contextValue || contextValue.Consumers.Count != 1 || contextValue.IsGraphOutput) return null;
        var output = contextValue.Consumers[0].Node;
        if (!IsTranspose(output, [1, 0, 2])) return null;

        var nodes = new List<Node> { scores, softmax, context, output };
        // Q: Transpose(Reshape(Slice(X)), [1, 0, 2]), optionally divided by a scalar constant.
        var query = scores.Input(0)!;
        float divisor = 1;
        if (query.Producer is { OpType: "Div", Domain: "" } div && div.Input(1) is { } d && Constants.TryGetTensor(d, out var dt) && dt.ElementCount == 1)
        {
            divisor = dt.ToFloats()[0];
            if (!float.IsFinite(divisor) || divisor == 0 || query.Consumers.Count != 1) return null;
            nodes.Add(div);
            query = div.Input(0)!;
        }
        if (Head(query, [1, 0, 2], nodes) is not { } q || Head(scores.Input(1)!, [1, 2, 0], nodes) is not { } k || Head(context.Input(1)!, [1, 0, 2], nodes) is not { } v)
            return null;
        // One X, sliced into consecutive thirds on its last axis: Q from 0, K where Q ends, V where K ends.
        var x = q.Slice.Input(0)!;
        if (!ReferenceEquals(k.Slice.Input(0), x) || !ReferenceEquals(v.Slice.Input(0), x)) return null;
        if (!IsZero(q.Slice.Input(1)!) || !ReferenceEquals(k.Slice.Input(1), q.Slice.Input(2)) || !ReferenceEquals(v.Slice.Input(1), k.Slice.Input(2))) return null;
        if (Width(x) is not { } width || width % 3 != 0) return null;
        long heads = q.Heads;
        if (heads <= 0 || k.Heads != heads || v.Heads != heads || width / 3 % heads != 0) return null;
        return new Attention(x, scores, context, output, nodes, heads, divisor, qk.Left, qk.Right, pv.Left, pv.Right);
    }

    private sealed record HeadSplit(Node Slice, long Heads);

    /// <summary>value = Transpose(Reshape(Slice(X, start, end, last axis), [T, B·H, d]), perm): the
    /// slice and H, read from the reshape's shape (a constant, or the exporter's Concat of
    /// Unsqueezed sizes with B·H as a product by the constant H). Adds the nodes to <paramref name="nodes"/>.</summary>
    private static HeadSplit? Head(Value value, long[] perm, List<Node> nodes)
    {
        if (value.Consumers.Count != 1 || value.Producer is not { } transpose || !IsTranspose(transpose, perm)) return null;
        if (transpose.Input(0) is not { Producer: { OpType: "Reshape", Domain: "" } reshape } reshaped || reshaped.Consumers.Count != 1) return null;
        if (reshape.Input(0) is not { Producer: { OpType: "Slice", Domain: "" } slice }) return null;
        if (slice.Inputs.Count < 4 || slice.Input(3) is not { } axes || !Constants.TryGetTensor(axes, out var at) || at.ElementCount != 1) return null;
        long axis = (long)at.ToFloats()[0];
        if (axis != -1 && axis != 2) return null;
        if (slice.Inputs.Count > 4 && slice.Input(4) is { } steps && !(Constants.TryGetTensor(steps, out var st) && st.ToFloats() is [1f])) return null;
        if (HeadsOf(reshape.Input(1)!, slice) is not { } heads) return null;
        nodes.AddRange([transpose, reshape, slice]);
        return new HeadSplit(slice, heads);
    }

    private static long? HeadsOf(Value shape, Node slice)
    {
        if (Constants.TryGetTensor(shape, out var constant))
        {
            // [T, B·H, d]: H = D / d with D the slice's width (a third of X's).
            var dims = constant.ToFloats();
            return dims.Length == 3 && dims[2] > 0 && Width(slice.Input(0)!) is { } width && width / 3 % (long)dims[2] == 0 ? width / 3 / (long)dims[2] : null;
        }
        if (shape.Producer is not { OpType: "Concat", Domain: "" } concat || concat.Inputs.Count != 3) return null;
        var batchHeads = concat.Input(1)!;
        if (batchHeads.Producer is { OpType: "Unsqueeze" } unsqueeze) batchHeads = unsqueeze.Input(0)!;
        if (batchHeads.Producer is not { OpType: "Mul", Domain: "" } mul) return null;
        foreach (var input in mul.Inputs)
            if (input is not null && Constants.TryGetTensor(input, out var h) && h.ElementCount == 1 && h.DataType is DataType.Int64 or DataType.Int32)
                return (long)h.ToFloats()[0];
        return null;
    }

    /// <summary>X's last dimension from the linear layer that writes it (the lowered op's n, or a
    /// float weight's columns), or null.</summary>
    private static long? Width(Value x)
    {
        var producer = x.Producer;
        if (producer is { OpType: NativeLinearLowering.OpType, Domain: NativeOps.Domain }) return producer.Attribute("n")?.AsInt();
        if (producer is { OpType: "Add" }) producer = producer.Inputs.Select(i => i?.Producer).FirstOrDefault(p => p is { OpType: "MatMul" });
        if (producer is { OpType: "MatMul" } && producer.Input(1) is { } w && Constants.TryGetTensor(w, out var t) && t.Dims.Count == 2) return t.Dims[1];
        return null;
    }

    private static bool IsTranspose(Node node, long[] perm) =>
        node is { OpType: "Transpose", Domain: "" } && node.Attribute("perm")?.AsInts() is { } p && p.SequenceEqual(perm);

    private static bool IsZero(Value v) => Constants.TryGetTensor(v, out var t) && t.ElementCount == 1 && t.ToFloats()[0] == 0;

    /// <summary>The matched nodes plus the shape arithmetic that only they read (the exporter's
    /// Shape → Gather → Unsqueeze → Concat chains into the reshapes and slice bounds), in an order
    /// that removes readers first; null when something outside reads an intermediate value.
    /// Only what lies upstream of those shape inputs is considered, and never past a Shape node,
    /// so no node computing tensor data is touched.</summary>
    private static List<Node>? DeadWith(Graph graph, Attention m)
    {
        var set = new HashSet<Node>(m.Nodes);
        var candidates = new HashSet<Node>();
        var pending = new Stack<Value>();
        foreach (var node in m.Nodes.Where(n => n.OpType is "Reshape" or "Slice"))
            foreach (var input in node.Inputs.Skip(1)) if (input is not null) pending.Push(input);
        while (pending.Count > 0)
        {
            if (pending.Pop().Producer is not { } p || set.Contains(p) || !IsShapeArithmetic(p) || !candidates.Add(p)) continue;
            if (p.OpType != "Shape") foreach (var input in p.Inputs) if (input is not null) pending.Push(input);
        }
        for (bool grew = true; grew;)
        {
            grew = false;
            foreach (var node in candidates.Where(c => !set.Contains(c)).ToList())
                if (node.Outputs.OfType<Value>().All(o => !o.IsGraphOutput && o.Consumers.All(c => set.Contains(c.Node)))) grew |= set.Add(node);
        }
        foreach (var node in set)
        {
            if (node == m.Output) continue;
            if (node.Outputs.OfType<Value>().Any(o => o.IsGraphOutput || o.Consumers.Any(c => !set.Contains(c.Node)))) return null;
        }
        // Graph order is topological: readers come after writers.
        return graph.Nodes.Where(set.Contains).Reverse().ToList();
    }

    private static bool IsShapeArithmetic(Node node) => node.Domain.Length == 0 && node.OpType is "Shape" or "Gather" or "Unsqueeze" or "Squeeze"
        or "Concat" or "Cast" or "Mul" or "Div" or "Add" or "Sub" or "Constant";
}
