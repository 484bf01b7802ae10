using OnnxViTQ.Ir;
using static OnnxViTQ.Ir.AttributeValue;

namespace OnnxViTQ.Passes.Canonicalize;

/// <summary>
/// One crossing of an operator version: compatible (the old form means the same at the new
/// version: a type added, a new attribute whose default is the old behaviour), or rewritten by
/// <see cref="Apply"/>, which returns the node that continues through later versions (null when
/// the node is now in its final form or gone). <see cref="Refusal"/> says why a node cannot cross,
/// checked before the model is changed; <see cref="NeedsShape"/> asks for its first input's shape.
/// </summary>
internal sealed record OpsetStep(bool IsCompatible, Func<OpsetAdaptation, Node, Node?> Apply, Func<Node, string?>? Refusal = null, Func<Node, bool>? ShapeWanted = null)
{
    public bool NeedsShape(Node node) => ShapeWanted?.Invoke(node) ?? false;
}

/// <summary>
/// The version adapters, per operator and version, up (older → newer) and down (newer → older).
/// The semantics come from the ONNX operator changelog; each rewrite is checked by running the
/// old and the converted model in ONNX Runtime (OpsetConversionTests).
/// </summary>
internal static class OpsetAdapters
{
    private static readonly OpsetStep Compatible = new(true, (_, n) => n);

    private static readonly Dictionary<(string Op, int Version), OpsetStep> Up = new();
    private static readonly Dictionary<(string Op, int Version), OpsetStep> Down = new();

    private static readonly string[] ReduceOps =
        ["ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare"];

    static OpsetAdapters()
    {
        // Up to 13: versions that only added types, negative axes or attributes whose default is
        // the old behaviour.
        AddUp(Compatible, "Abs Ceil Erf Exp Expand Floor Identity IsNaN LRN Log MatMul MeanVarianceNormalization Mod Neg NonZero " +
                          "Reciprocal Relu Reshape Resize Shape Sigmoid Sign Size Sqrt Tanh Tile Transpose SpaceToDepth " +
                          "NegativeLogLikelihoodLoss SoftmaxCrossEntropyLoss QuantizeLinear DequantizeLinear GatherElements " +
                          "ScatterElements ScatterND Pad Clip Dropout Add Sub Mul Div Sum Mean", 13);
        AddUp(Compatible, "ArgMax ArgMin Max Min GatherND Pow", 12, 13);
        AddUp(Compatible, "ArgMax ArgMin Compress Concat Conv ConvTranspose DepthToSpace Equal Flatten Gather Gemm Hardmax LogSoftmax " +
                          "Softmax LpPool MaxUnpool NonMaxSuppression OneHot Scatter Slice Split Squeeze Unsqueeze TopK If Loop " +
                          "AveragePool MaxPool ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin " +
                          "ReduceProd ReduceSum ReduceSumSquare Constant Scan", 11);
        AddUp(Compatible, "Concat DepthToSpace Equal Flatten Gather Gemm If Loop Cast Constant Greater Less Max Min ReduceL1 ReduceL2 " +
                          "ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSumSquare Slice", 13);
        AddUp(Compatible, "Constant GatherND MaxPool Clip ReduceMax ReduceMin", 12);
        AddUp(Compatible, "AveragePool MaxPool", 10);
        AddUp(Compatible, "Cast Constant Flatten Gemm Greater Less MatMul PRelu", 9);
        AddUp(Compatible, "Max Min Mean Sum MaxPool", 8);
        // 14–21: the same kind of change.
        AddUp(Compatible, "Add Sub Mul Div BatchNormalization Relu Reshape Identity CumSum GRU LSTM RNN", 14);
        AddUp(Compatible, "BatchNormalization Pow Shape", 15);
        AddUp(Compatible, "Identity If Loop Scan LeakyRelu PRelu GreaterOrEqual LessOrEqual Where ScatterElements ScatterND", 16);
        AddUp(Compatible, "Pad Resize Split LpPool ScatterElements ScatterND OptionalGetElement OptionalHasElement", 18);
        AddUp(Compatible, "AveragePool Cast CastLike Constant DequantizeLinear QuantizeLinear Equal Identity If Loop Scan Pad Reshape Resize Shape Size", 19);
        AddUp(Compatible, "ConstantOfShape IsInf IsNaN ReduceMax ReduceMin", 20);
        AddUp(Compatible, "Cast CastLike Constant ConstantOfShape DequantizeLinear QuantizeLinear Flatten Identity If Loop Scan Pad QLinearMatMul " +
                          "Reshape Shape Size Squeeze Transpose Unsqueeze", 21);

        // Down from 18–21: type-only versions (types the target lacks are refused model-wide).
        AddDown(Compatible, "Constant Identity If Loop Scan Reshape Shape Size Equal", 19);
        AddDown(Compatible, "ConstantOfShape IsInf IsNaN ReduceMax ReduceMin", 20);
        AddDown(Compatible, "Constant ConstantOfShape Identity If Loop Scan Reshape Shape Size Flatten QLinearMatMul Squeeze Transpose Unsqueeze Pad", 21);

        AddUp(new(false, RemoveSpatial, n => n.GetInt("spatial", 1) == 0 ? "spatial=0 (statistics per location) has no form after opset 8" : null), "BatchNormalization", 9);
        AddUp(new(false, ClipAttributesToInputs), "Clip", 11);
        var dropout = new OpsetStep(false, DropoutToNothing, n => n.Outputs.Skip(1).Any(o => o is not null && (o.Consumers.Count > 0 || o.IsGraphOutput))
            ? "its mask output is used (inference graphs do not need it)" : null);
        AddUp(dropout, "Dropout", 10, 12);
        var softmax = new OpsetStep(false, SoftmaxAxis, ShapeWanted: n => n.GetInt("axis", 1) != -1);
        AddUp(softmax, "Softmax LogSoftmax Hardmax", 13);
        AddUp(new(false, PadAttributesToInputs, n => n.Attribute("pads") is null ? "it has no 'pads'" : null), "Pad", 11);
        AddUp(new(false, Resize10To13, Resize10Refusal), "Resize", 11);
        AddUp(new(false, UpsampleToResize, UpsampleRefusal), "Upsample", 9, 10);
        AddUp(new(false, SliceAttributesToInputs, n => n.Attribute("starts") is null || n.Attribute("ends") is null ? "it has no 'starts'/'ends'" : null), "Slice", 10);
        AddUp(new(false, (c, n) => AttributeToInput(c, n, "split", 1)), "Split", 13);
        AddUp(new(false, (c, n) => AttributeToInput(c, n, "axes", 1)), "Squeeze Unsqueeze ReduceSum", 13);
        AddUp(new(false, (c, n) => AttributeToInput(c, n, "axes", 1)), string.Join(' ', ReduceOps), 18);
        AddUp(new(false, TopKAttributeToInput, n => n.Attribute("k") is null ? "it has no 'k'" : null), "TopK", 10);
        AddUp(new(false, RoiAlignKeepsOutputHalfPixel), "RoiAlign", 16);
        AddUp(new(false, (c, n) => RenameMode(c, n, ("bilinear", "linear"), ("bicubic", "cubic"))), "GridSample", 20);

        AddDown(new(false, ReduceAxesInputToAttribute, n =>
                n.Attribute("axes") is not null ? "it has an 'axes' attribute, which opset 18 made an input (the file is not valid at its opset)"
                : n.Input(1) is { } a && OpsetAdaptation.ConstantInts(a) is null ? "its axes are computed at run time" : null),
            string.Join(' ', ReduceOps), 18);
        AddDown(new(false, SplitNumOutputsToSizes, ShapeWanted: n => n.Attribute("num_outputs") is not null && n.Input(1) is null), "Split", 18);
        AddDown(new(false, PadAxesToFullPads, n => n.Input(3) is { } axes && (OpsetAdaptation.ConstantInts(axes) is null || OpsetAdaptation.ConstantInts(n.Input(1)) is null)
            ? "its axes or pads are computed at run time" : null, n => n.Input(3) is not null), "Pad", 18);
        AddDown(new(false, (_, n) => n, n => n.Attribute("mode")?.AsString() == "wrap" ? "mode 'wrap' does not exist before opset 19" : null), "Pad", 19);
        AddDown(new(false, (c, n) => RemoveDefaults(c, n, "antialias", "axes", "keep_aspect_ratio_policy"), n =>
            n.GetInt("antialias", 0) != 0 ? "antialias=1 does not exist before opset 18"
            : n.Attribute("axes") is not null ? "'axes' does not exist before opset 18"
            : n.Attribute("keep_aspect_ratio_policy") is { } p && p.AsString() != "stretch" ? $"keep_aspect_ratio_policy '{p.AsString()}' does not exist before opset 18" : null), "Resize", 18);
        AddDown(new(false, (_, n) => n, n => n.Attribute("coordinate_transformation_mode")?.AsString() == "half_pixel_symmetric"
            ? "coordinate_transformation_mode 'half_pixel_symmetric' does not exist before opset 19" : null), "Resize", 19);
        AddDown(new(false, (_, n) => n, n => n.Attribute("reduction")?.AsString() is "max" or "min" ? $"reduction '{n.Attribute("reduction")!.AsString()}' does not exist before opset 18" : null),
            "ScatterElements ScatterND", 18);
        AddDown(new(false, (c, n) => RemoveDefaults(c, n, "ceil_mode"), n => n.GetInt("ceil_mode", 0) != 0 ? "ceil_mode=1 does not exist before opset 18" : null), "LpPool", 18);
        AddDown(new(false, (c, n) => RemoveDefaults(c, n, "dilations"), n => n.Attribute("dilations")?.AsInts().Any(d => d != 1) == true ? "dilations do not exist before opset 19" : null),
            "AveragePool", 19);
        AddDown(new(false, (c, n) => RemoveDefaults(c, n, "saturate")), "Cast CastLike", 19, 21);
        AddDown(new(false, (c, n) => RemoveDefaults(c, n, "saturate", "block_size", "output_dtype"), n =>
            n.GetInt("block_size", 0) != 0 ? "blocked quantization does not exist before opset 21"
            : n.GetInt("output_dtype", 0) != 0 ? "'output_dtype' does not exist before opset 21 (give a zero point of that type)" : null),
            "QuantizeLinear DequantizeLinear", 19, 21);
        AddDown(new(false, (c, n) => RenameMode(c, n, ("linear", "bilinear"), ("cubic", "bicubic"))), "GridSample", 20);
        AddDown(new(false, GeluToErf, n => n.Attribute("approximate")?.AsString() is null or "none" or "tanh" ? null : $"approximate '{n.Attribute("approximate")!.AsString()}' is unknown"),
            "Gelu", 20);
        AddDown(new(false, MishToSoftplusTanh), "Mish", 18);
    }

    /// <summary>The step for <paramref name="node"/> crossing <paramref name="version"/>.</summary>
    /// <exception cref="OnnxViTQException">No adapter: the message names the node, the op and the version.</exception>
    public static OpsetStep Find(Node node, int version, bool up, OpsetAdaptation context)
    {
        if ((up ? Up : Down).TryGetValue((node.OpType, version), out var step)) return step;
        OnnxOperatorVersions.TryGet(node.OpType, out var versions);
        string why = !up && versions.Count > 0 && versions[0] == version
            ? $"{node.OpType} does not exist before opset {version} and has no equivalent here"
            : $"no adapter for {node.OpType} {(up ? "to" : "from")} version {version}";
        throw context.Refuse(node, version, why);
    }

    /// <summary>Whether crossing <paramref name="version"/> of <paramref name="opType"/> has a step.</summary>
    public static bool Has(string opType, int version, bool up) => (up ? Up : Down).ContainsKey((opType, version));

    private static void AddUp(OpsetStep step, string ops, params int[] versions) => Add(Up, step, ops, versions);

    private static void AddDown(OpsetStep step, string ops, params int[] versions) => Add(Down, step, ops, versions);

    private static void Add(Dictionary<(string, int), OpsetStep> table, OpsetStep step, string ops, int[] versions)
    {
        foreach (var op in ops.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            foreach (int v in versions)
                table[(op, v)] = step;
    }

    private static IEnumerable<AttributeValue> Except(Node n, params string[] names) => n.Attributes.Where(a => !names.Contains(a.Name));

    private static Node? RemoveSpatial(OpsetAdaptation c, Node n)
    {
        if (n.RemoveAttribute("spatial")) c.Changed();
        return n;
    }

    private static Node? RemoveDefaults(OpsetAdaptation c, Node n, params string[] names)
    {
        foreach (var name in names)
            if (n.RemoveAttribute(name)) c.Changed();
        return n;
    }

    private static Node? RenameMode(OpsetAdaptation c, Node n, params (string From, string To)[] renames)
    {
        var mode = n.Attribute("mode")?.AsString();
        foreach (var (from, to) in renames)
            if (mode == from) { n.SetAttribute(String("mode", to)); c.Changed(); }
        return n;
    }

    /// <summary>An attribute that became an input (Split's split, Squeeze/Unsqueeze/ReduceX axes):
    /// an int64 constant at <paramref name="index"/>.</summary>
    private static Node? AttributeToInput(OpsetAdaptation c, Node n, string attribute, int index)
    {
        if (n.Attribute(attribute) is not { } a) return n;
        var inputs = n.Inputs.Take(index).ToList();
        inputs.Add(c.Int64s(n, attribute, a.AsInts()));
        return c.Replace(n, n.OpType, inputs, Except(n, attribute));
    }

    private static Node? ClipAttributesToInputs(OpsetAdaptation c, Node n)
    {
        var min = n.Attribute("min");
        var max = n.Attribute("max");
        if (min is null && max is null) return n;
        var x = n.Input(0);
        List<Value?> inputs = [x, min is null ? null : c.Scalar(n, "min", min.AsFloat(), x)];
        if (max is not null) inputs.Add(c.Scalar(n, "max", max.AsFloat(), x));
        return c.Replace(n, "Clip", inputs, Except(n, "min", "max"));
    }

    private static Node? DropoutToNothing(OpsetAdaptation c, Node n)
    {
        c.Bypass(n, n.Input(0)!);
        return null;
    }

    /// <summary>
    /// Before 13, Softmax (LogSoftmax, Hardmax) flattened its input to 2-D at <c>axis</c> (default 1)
    /// and normalised the second dimension; from 13 it normalises the one axis (default -1). Same
    /// when the axis is the last one (what PyTorch exports), so only the axis is made explicit;
    /// otherwise Flatten → op(axis=-1) → Reshape to the input's shape computes the old meaning.
    /// </summary>
    private static Node? SoftmaxAxis(OpsetAdaptation c, Node n)
    {
        long axis = n.GetInt("axis", 1);
        var x = n.Input(0)!;
        long rank = c.ShapeOf(x)?.Length ?? -1;
        if (axis == -1 || (rank > 0 && (axis < 0 ? axis + rank : axis) == rank - 1))
        {
            if (n.Attribute("axis") is null) { n.SetAttribute(Int("axis", axis)); c.Changed(); }
            return n;
        }
        var g = n.Graph;
        var flat = g.AddNode("Flatten", [x], [$"{n.Name}_2d"], [Int("axis", axis)], before: n).Output();
        var normalized = g.AddNode(n.OpType, [flat], [$"{n.Name}_2d_out"], [Int("axis", -1)], before: n).Output();
        var shape = g.AddNode("Shape", [x], [$"{n.Name}_shape"], before: n).Output();
        var back = g.AddNode("Reshape", [normalized, shape], [$"{n.Name}_nd"], before: n).Output();
        OpsetAdaptation.TakeOver(n, [back]);
        return null;
    }

    private static Node? PadAttributesToInputs(OpsetAdaptation c, Node n)
    {
        var x = n.Input(0);
        List<Value?> inputs = [x, c.Int64s(n, "pads", n.Attribute("pads")!.AsInts())];
        float value = n.GetFloat("value", 0f);
        if (value != 0f) inputs.Add(c.Scalar(n, "value", value, x));
        return c.Replace(n, "Pad", inputs, Except(n, "pads", "value"));
    }

    private static Node? SliceAttributesToInputs(OpsetAdaptation c, Node n)
    {
        List<Value?> inputs = [n.Input(0), c.Int64s(n, "starts", n.Attribute("starts")!.AsInts()), c.Int64s(n, "ends", n.Attribute("ends")!.AsInts())];
        if (n.Attribute("axes") is { } axes) inputs.Add(c.Int64s(n, "axes", axes.AsInts()));
        return c.Replace(n, "Slice", inputs, Except(n, "starts", "ends", "axes"));
    }

    private static Node? TopKAttributeToInput(OpsetAdaptation c, Node n) =>
        c.Replace(n, "TopK", [n.Input(0), c.Int64s(n, "k", [n.Attribute("k")!.AsInt()])], Except(n, "k"));

    private static Node? RoiAlignKeepsOutputHalfPixel(OpsetAdaptation c, Node n)
    {
        // The default changed to half_pixel at 16; the old behaviour is named output_half_pixel.
        if (n.Attribute("coordinate_transformation_mode") is not null) return n;
        n.SetAttribute(String("coordinate_transformation_mode", "output_half_pixel"));
        c.Changed();
        return n;
    }

    // Resize-10 and Upsample sample with asymmetric coordinates; nearest rounds down when
    // enlarging and up when shrinking (ONNX Runtime's opset-10 behaviour), which Resize-13 names.
    private static string? NearestMode(float[]? scales) => scales switch
    {
        null => null,
        _ when scales.All(s => s >= 1f) => "floor",
        _ when scales.All(s => s <= 1f) => "ceil",
        _ => null,
    };

    private static string? Resize10Refusal(Node n) =>
        (n.Attribute("mode")?.AsString() ?? "nearest") == "nearest" && NearestMode(OpsetAdaptation.ConstantFloats(n.Input(1))) is null
            ? "nearest mode with scales computed at run time, or enlarging some axes and shrinking others: opset 10 rounds each way differently"
            : null;

    private static Node? Resize10To13(OpsetAdaptation c, Node n)
    {
        string mode = n.Attribute("mode")?.AsString() ?? "nearest";
        var attributes = new List<AttributeValue> { String("mode", mode), String("coordinate_transformation_mode", "asymmetric") };
        if (mode == "nearest") attributes.Add(String("nearest_mode", NearestMode(OpsetAdaptation.ConstantFloats(n.Input(1)))!));
        return c.Replace(n, "Resize", [n.Input(0), null, n.Input(1)], attributes);
    }

    private static string? UpsampleRefusal(Node n) =>
        (n.Attribute("mode")?.AsString() ?? "nearest") is "nearest" or "linear" or "bilinear" ? null : $"mode '{n.Attribute("mode")!.AsString()}' is unknown";

    private static Node? UpsampleToResize(OpsetAdaptation c, Node n)
    {
        string mode = n.Attribute("mode")?.AsString() ?? "nearest";
        if (mode == "bilinear") mode = "linear";
        // Upsample-7 holds its scales in an attribute; from 9 they are an input.
        var scales = n.Attribute("scales") is { } s
            ? n.Graph.AddInitializer(n.Graph.UniqueName($"{n.Name}_scales"), Ir.Tensor.FromFloats([s.AsFloats().Count], s.AsFloats().ToArray()))
            : n.Input(1)!;
        var attributes = new List<AttributeValue> { String("mode", mode), String("coordinate_transformation_mode", "asymmetric") };
        if (mode == "nearest") attributes.Add(String("nearest_mode", "floor"));
        c.Replace(n, "Resize", [n.Input(0), null, scales], attributes);
        return null;
    }

    private static Node? ReduceAxesInputToAttribute(OpsetAdaptation c, Node n)
    {
        var axes = OpsetAdaptation.ConstantInts(n.Input(1));
        bool noop = n.GetInt("noop_with_empty_axes", 0) != 0;
        if (noop && (axes is null || axes.Length == 0))
        {
            c.Bypass(n, n.Input(0)!);
            return null;
        }
        var attributes = Except(n, "noop_with_empty_axes", "axes").ToList();
        if (axes is { Length: > 0 }) attributes.Add(Ints("axes", axes));
        return c.Replace(n, n.OpType, [n.Input(0)], attributes);
    }

    private static Node? SplitNumOutputsToSizes(OpsetAdaptation c, Node n)
    {
        if (n.Attribute("num_outputs") is not { } numOutputs) return n;
        if (n.Input(1) is not null) return c.Replace(n, "Split", n.Inputs, Except(n, "num_outputs"));
        long parts = numOutputs.AsInt();
        if (parts < 1 || parts != n.Outputs.Count) throw c.Refuse(n, 18, $"num_outputs {parts} but {n.Outputs.Count} outputs");
        var shape = c.ShapeOf(n.Input(0)) ?? throw c.Refuse(n, 18, "num_outputs needs the split axis' size, and the input's shape is unknown");
        long axis = n.GetInt("axis", 0);
        if (axis < 0) axis += shape.Length;
        if (axis < 0 || axis >= shape.Length) throw c.Refuse(n, 18, $"axis {n.GetInt("axis", 0)} is outside the input's rank {shape.Length}");
        long size = shape[axis];
        if (size % parts == 0) return c.Replace(n, "Split", [n.Input(0)], Except(n, "num_outputs"));
        // Opset 18: chunks of ceil(size / parts), the last one smaller.
        long chunk = (size + parts - 1) / parts;
        var sizes = Enumerable.Range(0, (int)parts).Select(i => i < parts - 1 ? chunk : size - chunk * (parts - 1)).ToArray();
        return c.Replace(n, "Split", [n.Input(0), c.Int64s(n, "split", sizes)], Except(n, "num_outputs"));
    }

    private static Node? PadAxesToFullPads(OpsetAdaptation c, Node n)
    {
        if (n.Input(3) is not { } axesInput) return n;
        var axes = OpsetAdaptation.ConstantInts(axesInput)!;
        var pads = OpsetAdaptation.ConstantInts(n.Input(1))!;
        var rank = c.ShapeOf(n.Input(0))?.Length ?? throw c.Refuse(n, 18, "'axes' needs the input's rank, which is unknown");
        if (pads.Length != 2 * axes.Length) throw c.Refuse(n, 18, $"{pads.Length} pads for {axes.Length} axes");
        var full = new long[2 * rank];
        for (int i = 0; i < axes.Length; i++)
        {
            long a = axes[i] < 0 ? axes[i] + rank : axes[i];
            if (a < 0 || a >= rank) throw c.Refuse(n, 18, $"axis {axes[i]} is outside the input's rank {rank}");
            full[a] = pads[i];
            full[a + rank] = pads[i + axes.Length];
        }
        return c.Replace(n, "Pad", [n.Input(0), c.Int64s(n, "pads", full), n.Input(2)], n.Attributes);
    }

    /// <summary>Gelu (opset 20) as PyTorch writes it below 20: x·0.5·(1 + erf(x/√2)), or with
    /// approximate='tanh' 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    private static Node? GeluToErf(OpsetAdaptation c, Node n)
    {
        var g = n.Graph;
        var x = n.Input(0)!;
        Value Op(string op, string suffix, params Value[] inputs) => g.AddNode(op, inputs, [$"{n.Name}_{suffix}"], before: n).Output();
        Value result;
        if (n.Attribute("approximate")?.AsString() == "tanh")
        {
            var cube = Op("Pow", "cube", x, c.Scalar(n, "three", 3f, x));
            var inner = Op("Add", "inner", x, Op("Mul", "cubic_term", cube, c.Scalar(n, "k", 0.044715f, x)));
            var t = Op("Tanh", "tanh", Op("Mul", "scaled", inner, c.Scalar(n, "sqrt_2_over_pi", MathF.Sqrt(2f / MathF.PI), x)));
            result = Op("Mul", "half", Op("Mul", "times_x", x, Op("Add", "one_plus", t, c.Scalar(n, "one", 1f, x))), c.Scalar(n, "half_c", 0.5f, x));
        }
        else
        {
            var erf = Op("Erf", "erf", Op("Div", "div", x, c.Scalar(n, "sqrt2", 1.4142135381698608f, x)));
            result = Op("Mul", "half", Op("Mul", "times_x", x, Op("Add", "one_plus", erf, c.Scalar(n, "one", 1f, x))), c.Scalar(n, "half_c", 0.5f, x));
        }
        OpsetAdaptation.TakeOver(n, [result]);
        return null;
    }

    private static Node? MishToSoftplusTanh(OpsetAdaptation c, Node n)
    {
        var g = n.Graph;
        var x = n.Input(0)!;
        var softplus = g.AddNode("Softplus", [x], [$"{n.Name}_softplus"], before: n).Output();
        var tanh = g.AddNode("Tanh", [softplus], [$"{n.Name}_tanh"], before: n).Output();
        var y = g.AddNode("Mul", [x, tanh], [$"{n.Name}_mish"], before: n).Output();
        OpsetAdaptation.TakeOver(n, [y]);
        return null;
    }

    /// <summary>
    /// x·0.5·(1 + erf(x/√2)) in PyTorch's form (Div → Erf → Add 1 → Mul x → Mul 0.5) becomes
    /// <c>Gelu(x)</c>, as exporters write it from opset 20. Returns the number fused.
    /// </summary>
    public static int FuseGelu(Graph g)
    {
        int fused = 0;
        foreach (var erf in g.Nodes.Where(n => n.OpType == "Erf" && n.Domain is "" or "ai.onnx").ToList())
        {
            if (erf.IsRemoved || erf.Input(0)?.Producer is not { OpType: "Div" } div) continue;
            var x = div.Input(0);
            if (x is null || !IsScalar(div.Input(1), 1.41421356f)) continue;
            if (Single(erf.Output()) is not { OpType: "Add" } add || !IsScalar(Other(add, erf.Output()), 1f)) continue;
            if (Single(add.Output()) is not { OpType: "Mul" } mulX || !ReferenceEquals(Other(mulX, add.Output()), x)) continue;
            if (Single(mulX.Output()) is not { OpType: "Mul" } half || !IsScalar(Other(half, mulX.Output()), 0.5f)) continue;
            if (div.Output().Consumers.Count != 1) continue;
            string name = half.Name;
            var gelu = g.AddNode("Gelu", [x], [half.Output().Name + "_gelu"], before: half);
            OpsetAdaptation.TakeOver(half, [gelu.Output()]);
            foreach (var dead in new[] { mulX, add, erf, div }) g.RemoveNode(dead);
            gelu.Name = name;
            fused++;
        }
        return fused;

        static Node? Single(Value v) => v.Consumers.Count == 1 && !v.IsGraphOutput ? v.Consumers[0].Node : null;
        static Value? Other(Node binary, Value known) => ReferenceEquals(binary.Input(0), known) ? binary.Input(1) : binary.Input(0);
        static bool IsScalar(Value? v, float expected) =>
            OpsetAdaptation.ConstantFloats(v) is [var f] && MathF.Abs(f - expected) <= 1e-6f * MathF.Max(1f, MathF.Abs(expected));
    }
}
