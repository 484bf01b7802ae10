using OnnxViTQ.Ir;
using OnnxViTQ.Patterns;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Passes.Analysis;

/// <summary>A linear layer reading a LayerNorm's channels along its input (K) axis.</summary>
internal sealed record FoldedLinear(Node Node, Value Input)
{
    public bool IsGemm => Node.OpType == "Gemm";
}

/// <summary>
/// A LayerNorm and every linear layer its output reaches through channel-preserving data
/// movement — the unit a per-channel affine rewrite y' = (y − δ)/r of the LayerNorm output must
/// change as a whole (qkv packed or split, Swin's shifted window partition, heads on the class
/// and distillation tokens). <see cref="Refusal"/> says why it cannot be rewritten, if so;
/// <see cref="ZeroPadded"/>: the output is zero-padded on the way (Swin), so only δ = 0 is exact.
/// </summary>
internal sealed record LayerNormGroup(LayerNormMatch LayerNorm, int Channels, IReadOnlyList<FoldedLinear> Linears, bool ZeroPadded, string? Refusal)
{
    public string Name => LayerNorm.Root.Name;
    public bool Foldable => Refusal is null;
}

/// <summary>Finds the <see cref="LayerNormGroup"/>s of a model (shapes from <see cref="ValueShapes"/>).</summary>
internal static class LayerNormGroups
{
    public static IReadOnlyList<LayerNormGroup> Find(Model model, string modelName)
    {
        var lns = model.Graph.Nodes.Select(ViTPatterns.LayerNorm).OfType<LayerNormMatch>().ToList();
        // The decomposed form also matches without its affine ops (Div, Mul): keep the largest.
        var affine = lns.SelectMany(l => new[] { l.AffineMul, l.AffineAdd }).OfType<Node>().ToHashSet();
        lns = lns.Where(l => !l.Output.Consumers.Any(u => affine.Contains(u.Node) && !ReferenceEquals(u.Node, l.Root))).ToList();
        // Shapes of everything a LayerNorm output can reach by data movement.
        var probe = new HashSet<Value>();
        foreach (var ln in lns) Reachable(ln.Output, probe);
        var shapes = ValueShapes.Probe(model, probe, modelName);
        return lns.Select(ln => Analyse(ln, shapes)).ToList();
    }

    private static void Reachable(Value v, HashSet<Value> seen)
    {
        if (!seen.Add(v)) return;
        foreach (var use in v.Consumers)
            if (use.InputIndex == 0 && (ViTPatterns.IsDataMovement(use.Node) || use.Node.OpType is "GlobalAveragePool" or "ReduceMean"))
                foreach (var o in use.Node.Outputs.OfType<Value>()) Reachable(o, seen);
    }

    private static LayerNormGroup Analyse(LayerNormMatch ln, ValueShapes shapes)
    {
        var refuse = (string why) => new LayerNormGroup(ln, 0, [], false, why);
        if (!shapes.TryGet(ln.Output, out var outShape) || outShape.Length == 0) return refuse("its output shape is unknown");
        int rank = outShape.Length, channels = (int)outShape[^1];
        if (!NormalisesLastAxis(ln, rank)) return refuse("it does not normalise the last axis");
        if (ln.Gamma is null || !IsChannelVector(ln.Gamma, channels)) return refuse($"its scale γ is not a constant of {channels} elements");
        if (ln.Beta is not null && !IsChannelVector(ln.Beta, channels)) return refuse($"its shift β is not a constant of {channels} elements");

        var axisOf = new Dictionary<Value, int> { [ln.Output] = rank - 1 };
        var linears = new List<FoldedLinear>();
        var pendingConcats = new HashSet<Node>();
        var queue = new Queue<Value>([ln.Output]);
        bool zeroPadded = false;
        while (true)
        {
            while (queue.Count > 0)
            {
                var v = queue.Dequeue();
                int axis = axisOf[v];
                foreach (var use in v.Consumers)
                {
                    var c = use.Node;
                    if (c.OpType == "Shape") continue;
                    if (v.IsGraphOutput) return refuse($"'{v.Name}' is a graph output");
                    if (c.OpType == "Concat") { pendingConcats.Add(c); continue; }
                    string? why = Step(v, use, axis, channels, shapes, axisOf, linears, queue, ref zeroPadded);
                    if (why is not null) return refuse(why);
                }
                if (v.IsGraphOutput) return refuse($"'{v.Name}' is a graph output");
            }
            // A Concat joins the group once every data input is in it (Swin's roll: two slices of one tensor).
            var ready = pendingConcats.FirstOrDefault(c => c.Inputs.All(i => i is not null && axisOf.ContainsKey(i)));
            if (ready is null) break;
            pendingConcats.Remove(ready);
            var axes = ready.Inputs.Select(i => axisOf[i!]).Distinct().ToList();
            long concatAxis = Normalise(ready.GetInt("axis", 0), rank: shapes.Of(ready.Inputs[0]!).Length);
            if (axes.Count != 1 || concatAxis == axes[0]) return refuse($"Concat '{ready.Name}' joins along the channel axis");
            axisOf[ready.Output()] = axes[0];
            queue.Enqueue(ready.Output());
        }
        if (pendingConcats.Count > 0)
            return refuse($"Concat '{pendingConcats.First().Name}' also joins tensors that do not come from the LayerNorm");
        if (linears.Count == 0) return refuse("its output reaches no linear layer");
        return new LayerNormGroup(ln, channels, linears, zeroPadded, null);
    }

    /// <summary>Follows one use; returns why the group cannot be rewritten, or null.</summary>
    private static string? Step(Value v, Use use, int axis, int channels, ValueShapes shapes, Dictionary<Value, int> axisOf,
        List<FoldedLinear> linears, Queue<Value> queue, ref bool zeroPadded)
    {
        var c = use.Node;
        string at = $"{c.OpType} '{c.Name}'";
        int rank = shapes.Of(v).Length;
        if (ViTPatterns.IsLinear(c) && use.InputIndex == 0)
        {
            if (axis != rank - 1) return $"{at} reads the channels along another axis";
            Constants.TryGetTensor(c.Inputs[1]!, out var w);
            if (c.OpType == "MatMul" && w.Rank != 2) return $"{at} has a weight of rank {w.Rank}";
            if (c.OpType == "Gemm" && (c.GetInt("transA", 0) != 0 || rank != 2)) return $"{at} transposes its input";
            linears.Add(new FoldedLinear(c, v));
            return null;
        }
        if (use.InputIndex != 0) return $"the LayerNorm output is input {use.InputIndex} of {at}";
        Value Out() => c.Output();
        bool Has(Value x) => shapes.TryGet(x, out _);
        switch (c.OpType)
        {
            case "Transpose":
            {
                var perm = c.Attribute("perm")?.AsInts().Select(p => (int)p).ToList() ?? Enumerable.Range(0, rank).Reverse().ToList();
                return Enqueue(Out(), perm.IndexOf(axis));
            }
            case "Reshape" or "Flatten" or "Squeeze" or "Unsqueeze":
            {
                if (!Has(Out())) return $"the shape after {at} is unknown";
                var sin = shapes.Of(v);
                var sout = shapes.Of(Out());
                long inner = Product(sin, axis + 1);
                for (int j = 0; j < sout.Length; j++)
                    if (sout[j] == channels && Product(sout, j + 1) == inner) return Enqueue(Out(), j);
                return $"{at} mixes the channel axis with others";
            }
            case "Slice" or "Pad" or "Identity" or "Dropout" or "Expand" or "Tile" or "Cast":
            {
                if (!Has(Out())) return $"the shape after {at} is unknown";
                var sout = shapes.Of(Out());
                if (sout.Length != rank || sout[axis] != channels) return $"{at} changes the channel axis";
                if (c.OpType == "Pad" && (c.Attribute("mode")?.AsString() ?? "constant") == "constant" && !shapes.Of(v).SequenceEqual(sout))
                {
                    if (c.Input(2) is { } fill && !(Constants.TryGetTensor(fill, out var f) && f.ToFloats().All(x => x == 0)))
                        return $"{at} pads with a non-zero value";
                    zeroPadded = true;
                }
                return Enqueue(Out(), axis);
            }
            case "Gather":
            {
                if (!Has(Out())) return $"the shape after {at} is unknown";
                int g = (int)Normalise(c.GetInt("axis", 0), rank);
                if (g == axis) return $"{at} selects channels";
                int added = shapes.Of(Out()).Length - rank + 1;
                return Enqueue(Out(), axis < g ? axis : axis - 1 + added);
            }
            case "Split":
            {
                int s = (int)Normalise(c.GetInt("axis", 0), rank);
                if (s == axis) return $"{at} splits the channels";
                foreach (var o in c.Outputs.OfType<Value>()) { axisOf[o] = axis; queue.Enqueue(o); }
                return null;
            }
            case "GlobalAveragePool":
                // mean over space is affine: mean((y − δ)/r) = (mean(y) − δ)/r
                return axis == 1 ? Enqueue(Out(), 1) : $"{at} averages the channel axis";
            default:
                return $"the LayerNorm output reaches {at}";
        }

        string? Enqueue(Value o, int newAxis)
        {
            if (newAxis < 0 || (shapes.TryGet(o, out var s) && (newAxis >= s.Length || s[newAxis] != channels)))
                return $"{at} moves the channel axis where it cannot be followed";
            axisOf[o] = newAxis;
            queue.Enqueue(o);
            return null;
        }
    }

    private static bool NormalisesLastAxis(LayerNormMatch ln, int rank)
    {
        if (!ln.Decomposed) return Normalise(ln.Root.GetInt("axis", -1), rank) == rank - 1;
        // decomposed: both ReduceMean nodes reduce one axis; it must be the last
        var mean = ln.Input.Consumers.Select(u => u.Node).FirstOrDefault(n => n.OpType == "ReduceMean");
        if (mean is null) return false;
        var axes = mean.Attribute("axes")?.AsInts()
                   ?? (mean.Input(1) is { } a && Constants.TryGetTensor(a, out var t) ? t.AsSpan<long>().ToArray() : null);
        return axes is { Count: 1 } && Normalise(axes[0], rank) == rank - 1;
    }

    private static bool IsChannelVector(Value v, int channels) =>
        Constants.TryGetTensor(v, out var t) && t.DataType == DataType.Float && t.ElementCount == channels && t.Dims.Count(d => d != 1) <= 1;

    private static long Normalise(long axis, int rank) => axis < 0 ? axis + rank : axis;

    private static long Product(long[] shape, int from)
    {
        long p = 1;
        for (int i = from; i < shape.Length; i++) p *= shape[i];
        return p;
    }
}
