using OnnxViTQ.Ir;
using OnnxViTQ.Patterns;

namespace OnnxViTQ.Passes.Canonicalize;

/// <summary>What a conversion changed: the opsets and, per operator, how many nodes an adapter rewrote.</summary>
internal sealed record OpsetConversionSummary(long From, long To, IReadOnlyDictionary<string, int> Adapted)
{
    /// <summary>True when the model's default opset changed.</summary>
    public bool Changed => From != To;

    public override string ToString() => !Changed ? $"opset {From}"
        : $"opset {From} → {To}" + (Adapted.Count == 0 ? " (no node needed an adapter)"
            : $" ({string.Join(", ", Adapted.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Value} {kv.Key}"))} adapted)");
}

/// <summary>
/// Converts a model between default-domain opsets with version adapters of our own: every node's
/// operator is walked through each version between the model's opset and the target, and each
/// version it crosses either keeps its meaning (a type added, a default that matches) or is
/// rewritten by an adapter (attributes that became inputs, Softmax's axis, Upsample → Resize,
/// Gelu → its Erf form …). A node whose crossing has no adapter, or whose attributes use what the
/// target cannot express, is refused before anything is changed further, naming the node, the op
/// and the versions. Subgraphs (If/Loop/Scan bodies) are converted with the main graph.
/// </summary>
internal static class OpsetConversion
{
    /// <summary>The oldest opset accepted: before 7, elementwise ops broadcast by attribute.</summary>
    public const long OldestSupported = 7;

    /// <summary>The opsets the compiler's passes are written for. Older models are upgraded to the
    /// first, newer ones brought down to the last (standard ONNX, runs on any ONNX Runtime ≥ 1.13).</summary>
    public const long CompilerMin = 13, CompilerMax = 17;

    /// <summary>Concrete shapes of some values, as the original model computes them (null when
    /// unknown); asked once, before anything changes, for every value an adapter may need.</summary>
    public delegate IReadOnlyDictionary<Value, long[]> ShapeProbe(IReadOnlyList<Value> values);

    /// <summary>The opset the compiler works at for a model at <paramref name="opset"/>.</summary>
    public static long CompilerOpset(long opset) => Math.Clamp(opset, CompilerMin, CompilerMax);

    /// <summary>
    /// Converts <paramref name="model"/> in place to default opset <paramref name="target"/>.
    /// <paramref name="fuseGelu"/>: going to opset 20 or later, the exact Erf form of GELU that
    /// PyTorch writes below 20 becomes the <c>Gelu</c> operator, as PyTorch writes it at 20.
    /// </summary>
    /// <exception cref="OnnxViTQException">An opset outside 7–21, or a node no adapter can convert.</exception>
    public static OpsetConversionSummary Convert(Model model, long target, string modelName, ShapeProbe? probe = null, bool fuseGelu = false)
    {
        long from = model.DefaultOpset;
        if (from == 0) throw new OnnxViTQException($"'{modelName}' imports no default ONNX opset");
        if (from < OldestSupported)
            throw new OnnxViTQException($"'{modelName}' imports ONNX opset {from}; opsets older than {OldestSupported} are not supported (re-export with opset_version=13 or newer)");
        if (from > OnnxOperatorVersions.NewestKnown)
            throw new OnnxViTQException($"'{modelName}' imports ONNX opset {from}; this version knows operator changes up to opset {OnnxOperatorVersions.NewestKnown} (re-export with opset_version={OnnxOperatorVersions.NewestKnown} or older)");
        if (target < CompilerMin || target > OnnxOperatorVersions.NewestKnown)
            throw new OnnxViTQException($"target opset {target} is not supported (choose {CompilerMin}–{OnnxOperatorVersions.NewestKnown})");

        var adapted = new Dictionary<string, int>(StringComparer.Ordinal);
        if (from == target && !fuseGelu) return new OpsetConversionSummary(from, target, adapted);

        var graphs = model.AllGraphs().ToList();
        var unusedBefore = graphs.SelectMany(g => g.Initializers).Where(v => v.Consumers.Count == 0).ToHashSet();
        var plan = new List<(Node Node, List<int> Versions)>();
        foreach (var g in graphs)
            foreach (var node in g.Nodes)
            {
                if (node.Domain is not ("" or "ai.onnx")) continue;
                if (!OnnxOperatorVersions.TryGet(node.OpType, out var versions) || versions[0] > from)
                    throw new OnnxViTQException($"'{modelName}': node '{node.Name}' uses {node.OpType}, which ONNX opset {from} does not define");
                var crossed = OnnxOperatorVersions.Crossed(versions, from, target).ToList();
                if (crossed.Count > 0) plan.Add((node, crossed));
            }

        // Everything is checked before the first change: a refused model is left as it was read.
        bool up = from < target;
        var context = new OpsetAdaptation(modelName, from, target);
        foreach (var (node, versions) in plan)
            foreach (int v in versions)
                if (Guarded(context, node, v, () => OpsetAdapters.Find(node, v, up, context).Refusal?.Invoke(node)) is { } why)
                    throw context.Refuse(node, v, why);
        RefuseTypesTheTargetLacks(model, modelName, target);

        var needShapes = plan.Where(p => p.Versions.Any(v => OpsetAdapters.Find(p.Node, v, up, context).NeedsShape(p.Node)))
            .Select(p => p.Node.Input(0)).OfType<Value>().Distinct().ToList();
        if (needShapes.Count > 0 && probe is not null) context.Shapes = probe(needShapes);

        foreach (var (node, versions) in plan)
        {
            Node? current = node;
            bool changed = false;
            foreach (int v in versions)
            {
                var step = OpsetAdapters.Find(current, v, up, context);
                if (step.IsCompatible) continue;
                var at = current;
                var next = Guarded(context, at, v, () => step.Apply(context, at));
                changed |= !ReferenceEquals(next, current) | context.TakeChanged();
                if (next is null) break;
                current = next;
            }
            if (changed) adapted[node.OpType] = adapted.GetValueOrDefault(node.OpType) + 1;
        }
        if (fuseGelu && target >= 20)
        {
            int fused = graphs.Sum(OpsetAdapters.FuseGelu);
            if (fused > 0) adapted["Gelu (fused from Erf)"] = fused;
        }

        // Constants the replaced nodes read (old attributes' scalars, fused GELU's) go with them.
        foreach (var g in graphs)
            foreach (var v in g.Initializers.Where(v => v.Consumers.Count == 0 && !v.IsGraphOutput && !v.IsGraphInput && !unusedBefore.Contains(v)).ToList())
                g.RemoveInitializer(v);
        model.OpsetImports.RemoveAll(o => o.Domain is "" or "ai.onnx");
        model.OpsetImports.Insert(0, new OpsetImport("", target));
        return new OpsetConversionSummary(from, target, adapted);
    }

    /// <summary>A model file is untrusted: an attribute of the wrong type or a value out of range
    /// in a node an adapter reads is that node's refusal, not an internal error.</summary>
    private static T Guarded<T>(OpsetAdaptation context, Node node, int version, Func<T> adapt)
    {
        try
        {
            return adapt();
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IndexOutOfRangeException or OverflowException or InvalidCastException)
        {
            throw context.Refuse(node, version, e.Message);
        }
    }

    /// <summary>Brings a model into the compiler's opset range (<see cref="CompilerOpset"/>).</summary>
    public static OpsetConversionSummary ToCompilerRange(Model model, string modelName, ShapeProbe? probe = null) =>
        Convert(model, CompilerOpset(model.DefaultOpset == 0 ? CompilerMin : model.DefaultOpset), modelName, probe);

    /// <summary>Going below 19/21, tensors of the 8-bit float, 4-bit integer and 4-bit float types have no representation.</summary>
    private static void RefuseTypesTheTargetLacks(Model model, string modelName, long target)
    {
        static long IntroducedAt(DataType t) => t switch
        {
            DataType.Float8E4M3FN or DataType.Float8E4M3FNUZ or DataType.Float8E5M2 or DataType.Float8E5M2FNUZ => 19,
            DataType.UInt4 or DataType.Int4 => 21,
            DataType.Float4E2M1 => 23,
            _ => 0,
        };
        foreach (var g in model.AllGraphs())
        {
            foreach (var v in g.Values)
                if (v.Type?.ElementType is { } t && IntroducedAt(t) > target)
                    throw new OnnxViTQException($"'{modelName}': tensor '{v.Name}' is {t.OnnxName()}, which opset {target} does not have");
            foreach (var n in g.Nodes)
                foreach (var a in n.Attributes)
                {
                    if (a.Kind == AttributeKind.Tensor && IntroducedAt(a.AsTensor().DataType) > target)
                        throw new OnnxViTQException($"'{modelName}': node '{n.Name}' ({n.OpType}) holds a {a.AsTensor().DataType.OnnxName()} tensor, which opset {target} does not have");
                    if (a.Kind == AttributeKind.Int && a.Name is "to" or "output_dtype" && IntroducedAt((DataType)a.AsInt()) > target)
                        throw new OnnxViTQException($"'{modelName}': node '{n.Name}' ({n.OpType}) produces {((DataType)a.AsInt()).OnnxName()}, which opset {target} does not have");
                }
        }
    }
}

/// <summary>State of one conversion, handed to adapters: names, the probed shapes, helpers that
/// make constants and replace nodes while keeping value names (graph outputs and downstream
/// references stay valid).</summary>
internal sealed class OpsetAdaptation(string modelName, long from, long to)
{
    private bool _changed;

    public string ModelName { get; } = modelName;
    public long From { get; } = from;
    public long To { get; } = to;
    public IReadOnlyDictionary<Value, long[]> Shapes { get; set; } = new Dictionary<Value, long[]>();

    /// <summary>Marks that an in-place adapter changed its node (for the summary).</summary>
    public void Changed() => _changed = true;

    public bool TakeChanged()
    {
        bool c = _changed;
        _changed = false;
        return c;
    }

    public OnnxViTQException Refuse(Node node, int version, string why) =>
        new($"'{ModelName}': node '{node.Name}' ({node.OpType}) cannot be converted from opset {From} to {To} across {node.OpType}-{version}: {why}");

    public long[]? ShapeOf(Value? v) => v is not null && Shapes.TryGetValue(v, out var s) ? s : null;

    public Value Int64s(Node near, string suffix, IReadOnlyList<long> values) =>
        near.Graph.AddInitializer(near.Graph.UniqueName($"{near.Name}_{suffix}"), Tensor.FromInt64s([values.Count], values.ToArray()));

    public Value Int64Scalar(Node near, string suffix, long value) =>
        near.Graph.AddInitializer(near.Graph.UniqueName($"{near.Name}_{suffix}"), Tensor.FromInt64s([], [value]));

    /// <summary>A scalar of <paramref name="like"/>'s element type (float when unknown: the models here are float).</summary>
    public Value Scalar(Node near, string suffix, float value, Value? like)
    {
        var type = like?.Type?.ElementType ?? DataType.Float;
        Tensor t = type switch
        {
            DataType.Float => Tensor.Scalar(value),
            DataType.Double => Tensor.From(DataType.Double, [], [(double)value]),
            DataType.Float16 => Tensor.From(DataType.Float16, [], [(Half)value]),
            DataType.Int64 => Tensor.FromInt64s([], [(long)value]),
            DataType.Int32 => Tensor.From(DataType.Int32, [], [(int)value]),
            DataType.UInt8 => Tensor.From(DataType.UInt8, [], [(byte)value]),
            DataType.Int8 => Tensor.From(DataType.Int8, [], [(sbyte)value]),
            _ => throw new OnnxViTQException($"'{ModelName}': node '{near.Name}' ({near.OpType}): no {type.OnnxName()} scalar for its converted form"),
        };
        return near.Graph.AddInitializer(near.Graph.UniqueName($"{near.Name}_{suffix}"), t);
    }

    /// <summary>Integers held by a constant input (initializer or Constant node), or null.</summary>
    public static long[]? ConstantInts(Value? v)
    {
        if (v is null || !Constants.TryGetTensor(v, out var t)) return null;
        return t.DataType switch
        {
            DataType.Int64 => t.AsSpan<long>().ToArray(),
            DataType.Int32 => t.AsSpan<int>().ToArray().Select(x => (long)x).ToArray(),
            _ => null,
        };
    }

    /// <summary>Floats held by a constant input, or null.</summary>
    public static float[]? ConstantFloats(Value? v) =>
        v is not null && Constants.TryGetTensor(v, out var t) && t.DataType.IsFloatingPoint() ? t.ToFloats() : null;

    /// <summary>A new node of <paramref name="opType"/> in <paramref name="old"/>'s place: same
    /// name, its outputs take over the old outputs' names, types and uses.</summary>
    public Node Replace(Node old, string opType, IEnumerable<Value?> inputs, IEnumerable<AttributeValue> attributes)
    {
        var g = old.Graph;
        var node = g.AddNode(opType, inputs, old.Outputs.Select(o => o is null ? "" : o.Name + "_converted"), attributes, before: old);
        TakeOver(old, node.Outputs);
        node.Name = old.Name;
        return node;
    }

    /// <summary>Makes <paramref name="replacements"/> (outputs of nodes the adapter just added)
    /// stand for <paramref name="old"/>'s outputs (uses, graph outputs, names, types) and removes
    /// <paramref name="old"/>.</summary>
    public static void TakeOver(Node old, IReadOnlyList<Value?> replacements)
    {
        var g = old.Graph;
        var outputs = old.Outputs.ToList();
        for (int i = 0; i < outputs.Count; i++)
        {
            if (outputs[i] is not { } o) continue;
            var r = i < replacements.Count ? replacements[i] : null;
            if (r is null)
            {
                if (o.Consumers.Count > 0 || o.IsGraphOutput)
                    throw new InvalidOperationException($"output '{o.Name}' of '{old.Name}' is used but has no replacement");
                continue;
            }
            r.Type ??= o.Type;
            o.ReplaceUsesWith(r);
            if (o.IsGraphOutput) g.ReplaceOutput(o, r);
        }
        g.RemoveNode(old);
        for (int i = 0; i < outputs.Count; i++)
            if (outputs[i] is { } o && i < replacements.Count && replacements[i] is { } r && r.Producer is not null && ReferenceEquals(r.Graph, g))
                g.Rename(r, o.Name);
    }

    /// <summary>Removes <paramref name="old"/>, its first output replaced by <paramref name="by"/>
    /// (an Identity keeps the name where that output is a graph output).</summary>
    public void Bypass(Node old, Value by)
    {
        var output = old.Output();
        if (output.IsGraphOutput)
        {
            Replace(old, "Identity", [by], []);
            return;
        }
        output.ReplaceUsesWith(by);
        foreach (var o in old.Outputs)
            if (o is not null && (o.Consumers.Count > 0 || o.IsGraphOutput))
                throw new InvalidOperationException($"output '{o.Name}' of '{old.Name}' is still used");
        old.Graph.RemoveNode(old);
    }
}
