using OnnxViTQ.Ir;

namespace OnnxViTQ.Reconstruction;

/// <summary>
/// One vector-Jacobian product per supported ONNX op (default domain, opsets 13–17, the range the
/// passes work in): given the loss's gradients for a node's outputs, the gradients for its inputs,
/// as ONNX nodes. Each is checked against central finite differences run by ONNX Runtime
/// (GradientRuleTests). Quantization inside a module goes straight through: Round's gradient is
/// the identity and Clip passes it only inside its range, as in AdaRound's and LSQ's training.
/// </summary>
internal static class VjpRules
{
    private delegate void Rule(GradientBuilder b, Node n, Value?[] g);

    private static readonly Dictionary<string, Rule> Rules = new(StringComparer.Ordinal)
    {
        ["Identity"] = (b, n, g) => b.Accumulate(n.Input(0), () => g[0]!),
        ["Round"] = (b, n, g) => b.Accumulate(n.Input(0), () => g[0]!),
        ["Dropout"] = (b, n, g) => b.Accumulate(n.Input(0), () => g[0]!),
        ["Neg"] = (b, n, g) => b.Accumulate(n.Input(0), () => b.Op("Neg", [g[0]])),
        ["Add"] = (b, n, g) =>
        {
            b.Accumulate(n.Input(0), () => b.Unbroadcast(g[0]!, n.Output(), n.Input(0)!));
            b.Accumulate(n.Input(1), () => b.Unbroadcast(g[0]!, n.Output(), n.Input(1)!));
        },
        ["Sub"] = (b, n, g) =>
        {
            b.Accumulate(n.Input(0), () => b.Unbroadcast(g[0]!, n.Output(), n.Input(0)!));
            b.Accumulate(n.Input(1), () => b.Unbroadcast(b.Op("Neg", [g[0]]), n.Output(), n.Input(1)!));
        },
        ["Mul"] = (b, n, g) =>
        {
            b.Accumulate(n.Input(0), () => b.Unbroadcast(b.Op("Mul", [g[0], n.Input(1)]), n.Output(), n.Input(0)!));
            b.Accumulate(n.Input(1), () => b.Unbroadcast(b.Op("Mul", [g[0], n.Input(0)]), n.Output(), n.Input(1)!));
        },
        ["Div"] = (b, n, g) =>
        {
            // y = a / b: dy/da = 1/b, dy/db = −y/b.
            b.Accumulate(n.Input(0), () => b.Unbroadcast(b.Op("Div", [g[0], n.Input(1)]), n.Output(), n.Input(0)!));
            b.Accumulate(n.Input(1), () => b.Unbroadcast(b.Op("Neg", [b.Op("Div", [b.Op("Mul", [g[0], n.Output()]), n.Input(1)])]), n.Output(), n.Input(1)!));
        },
        ["MatMul"] = MatMul,
        ["Gemm"] = Gemm,
        ["Softmax"] = (b, n, g) =>
        {
            // dx = y ⊙ (g − Σ_axis g ⊙ y).
            var y = n.Output();
            long axis = n.GetInt("axis", -1);
            var dot = b.Op("ReduceSum", [b.Op("Mul", [g[0], y]), b.Ints(axis)], AttributeValue.Int("keepdims", 1));
            b.Accumulate(n.Input(0), () => b.Op("Mul", [y, b.Op("Sub", [g[0], dot])]));
        },
        ["Erf"] = (b, n, g) =>
        {
            var x = n.Input(0)!;
            var gauss = b.Op("Exp", [b.Op("Neg", [b.Op("Mul", [x, x])])]);
            b.Accumulate(x, () => b.Op("Mul", [g[0], b.Op("Mul", [gauss, b.Scalar((float)(2 / Math.Sqrt(Math.PI)))])]));
        },
        ["Tanh"] = (b, n, g) =>
        {
            var y = n.Output();
            b.Accumulate(n.Input(0), () => b.Op("Mul", [g[0], b.Op("Sub", [b.Scalar(1f), b.Op("Mul", [y, y])])]));
        },
        ["Sigmoid"] = (b, n, g) =>
        {
            var y = n.Output();
            b.Accumulate(n.Input(0), () => b.Op("Mul", [g[0], b.Op("Mul", [y, b.Op("Sub", [b.Scalar(1f), y])])]));
        },
        ["Exp"] = (b, n, g) => b.Accumulate(n.Input(0), () => b.Op("Mul", [g[0], n.Output()])),
        ["Relu"] = (b, n, g) => b.Accumulate(n.Input(0), () => b.Op("Where", [b.Op("Greater", [n.Input(0), b.Scalar(0f)]), g[0], b.Scalar(0f)])),
        ["Sqrt"] = (b, n, g) => b.Accumulate(n.Input(0), () => b.Op("Div", [g[0], b.Op("Mul", [n.Output(), b.Scalar(2f)])])),
        ["Pow"] = (b, n, g) =>
        {
            // Exponent a constant (LayerNorm's decomposition squares): d x^p = p x^(p−1).
            var p = n.Input(1)!;
            b.Accumulate(n.Input(0), () => b.Op("Mul", [g[0], b.Op("Mul", [p, b.Op("Pow", [n.Input(0), b.Op("Sub", [p, b.Scalar(1f)])])])]));
        },
        ["Clip"] = (b, n, g) =>
        {
            // Straight through inside [min, max], zero outside.
            var x = n.Input(0)!;
            Value inside = b.Op("Not", [b.Op("Or", [
                n.Input(1) is { } lo ? b.Op("Less", [x, lo]) : b.Op("Less", [x, b.Scalar(float.NegativeInfinity)]),
                n.Input(2) is { } hi ? b.Op("Greater", [x, hi]) : b.Op("Greater", [x, b.Scalar(float.PositiveInfinity)])])]);
            b.Accumulate(x, () => b.Op("Where", [inside, g[0], b.Scalar(0f)]));
        },
        ["Reshape"] = (b, n, g) => b.Accumulate(n.Input(0), () => b.Op("Reshape", [g[0], b.Op("Shape", [n.Input(0)])])),
        ["Flatten"] = (b, n, g) => b.Accumulate(n.Input(0), () => b.Op("Reshape", [g[0], b.Op("Shape", [n.Input(0)])])),
        ["Squeeze"] = (b, n, g) => b.Accumulate(n.Input(0), () => b.Op("Reshape", [g[0], b.Op("Shape", [n.Input(0)])])),
        ["Unsqueeze"] = (b, n, g) => b.Accumulate(n.Input(0), () => b.Op("Reshape", [g[0], b.Op("Shape", [n.Input(0)])])),
        ["Transpose"] = (b, n, g) =>
        {
            int rank = b.Rank(n.Input(0)!);
            var perm = n.Attribute("perm")?.AsInts().ToArray() ?? Enumerable.Range(0, rank).Reverse().Select(i => (long)i).ToArray();
            var inverse = new long[perm.Length];
            for (int i = 0; i < perm.Length; i++) inverse[perm[i]] = i;
            b.Accumulate(n.Input(0), () => b.Op("Transpose", [g[0]], AttributeValue.Ints("perm", inverse)));
        },
        ["ReduceMean"] = (b, n, g) => Reduce(b, n, g[0]!, mean: true),
        ["ReduceSum"] = (b, n, g) => Reduce(b, n, g[0]!, mean: false),
        ["GlobalAveragePool"] = (b, n, g) => b.Accumulate(n.Input(0), () => Spread(b, n.Input(0)!, n.Output(), g[0]!, mean: true)),
        ["LayerNormalization"] = LayerNormalization,
        ["Cast"] = (b, n, g) => b.Accumulate(n.Input(0), () => g[0]!),
        ["Expand"] = (b, n, g) => b.Accumulate(n.Input(0), () => b.Unbroadcast(g[0]!, n.Output(), n.Input(0)!)),
        ["Where"] = (b, n, g) =>
        {
            var zero = b.Scalar(0f);
            b.Accumulate(n.Input(1), () => b.Unbroadcast(b.Op("Where", [n.Input(0), g[0], zero]), n.Output(), n.Input(1)!));
            b.Accumulate(n.Input(2), () => b.Unbroadcast(b.Op("Where", [n.Input(0), zero, g[0]]), n.Output(), n.Input(2)!));
        },
        ["Gather"] = Gather,
        ["Pad"] = (b, n, g) =>
        {
            // Constant mode: the gradient is the padded gradient's interior, Slice(g, begin, |y| − end).
            Value x = n.Input(0)!, pads = n.Input(1)!;
            int rank = b.Rank(x);
            b.Accumulate(x, () =>
            {
                var begin = b.Op("Slice", [pads, b.Ints(0), b.Ints(rank)]);
                var end = b.Op("Sub", [b.Op("Shape", [n.Output()]), b.Op("Slice", [pads, b.Ints(rank), b.Ints(2 * rank)])]);
                return b.Op("Slice", [g[0], begin, end, b.Ints(Enumerable.Range(0, rank).Select(i => (long)i).ToArray())]);
            });
        },
        ["Slice"] = Slice,
        ["Concat"] = (b, n, g) =>
        {
            int rank = b.Rank(n.Output());
            long axis = n.GetInt("axis", 0);
            if (axis < 0) axis += rank;
            long offset = 0;
            foreach (var input in n.Inputs)
            {
                if (input is null) continue;
                long size = b.Shape(input)[axis], from = offset;
                b.Accumulate(input, () => b.Op("Slice", [g[0], b.Ints(from), b.Ints(from + size), b.Ints(axis)]));
                offset += size;
            }
        },
        ["Split"] = (b, n, g) =>
        {
            // The pieces' gradients side by side again; a piece nobody used contributes zeros.
            long axis = n.GetInt("axis", 0);
            var parts = n.Outputs.Select((o, i) => g[i] ?? b.Op("Mul", [o, b.Scalar(0f)])).ToArray();
            b.Accumulate(n.Input(0), () => b.Op("Concat", parts, AttributeValue.Int("axis", axis)));
        },
    };

    /// <summary>Ops whose outputs carry no gradient (integer shape arithmetic, comparisons).</summary>
    private static readonly HashSet<string> Constant = new(StringComparer.Ordinal)
    {
        "Shape", "Size", "ConstantOfShape", "Constant", "Range", "NonZero", "ArgMax", "ArgMin",
        "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf", "Sign", "Floor", "Ceil",
    };

    /// <summary>The inputs a gradient flows into: all of them for an op not listed, none for shape
    /// arithmetic and comparisons, only the data for ops whose other inputs are shapes, axes,
    /// indices or bounds.</summary>
    public static IEnumerable<Value> DifferentiableInputs(Node node)
    {
        if (node.Domain.Length == 0 && Constant.Contains(node.OpType)) return [];
        int[]? only = node.Domain.Length > 0 ? null : node.OpType switch
        {
            "Reshape" or "Expand" or "Slice" or "Gather" or "GatherElements" or "Squeeze" or "Unsqueeze" or "ReduceSum" or "ReduceMean" or "Clip" or "Pow" or "Tile" or "Pad" or "Split" or "Dropout" => [0],
            "Where" => [1, 2],
            _ => null,
        };
        return only is null
            ? node.Inputs.OfType<Value>()
            : only.Where(i => i < node.Inputs.Count).Select(i => node.Inputs[i]).OfType<Value>();
    }

    public static bool Has(Node node) => node.Domain.Length == 0 && Rules.ContainsKey(node.OpType) && Supported(node);

    public static void Emit(GradientBuilder builder, Node node, Value?[] outputGrads)
    {
        // An output nobody differentiates through contributes nothing: zeros keep the rules simple.
        var grads = outputGrads.Select((gr, i) => gr ?? (i == 0 && node.Outputs[0] is { } o ? builder.Op("Mul", [o, builder.Scalar(0f)]) : null)).ToArray();
        Rules[node.OpType](builder, node, grads);
    }

    /// <summary>Forms a rule does not cover: LayerNormalization's optional mean/inverse-std outputs
    /// consumed, ReduceSum with axes from a non-constant input, Pow with a non-constant exponent.</summary>
    private static bool Supported(Node node) => node.OpType switch
    {
        "LayerNormalization" => node.Outputs.Skip(1).All(o => o is null || o.Consumers.Count == 0 && !o.IsGraphOutput),
        "ReduceSum" or "ReduceMean" => node.Input(1) is null || ConstantOf(node.Input(1)) is not null,
        "Pow" => ConstantOf(node.Input(1)) is not null,
        "Cast" => node.GetInt("to", 0) == (long)DataType.Float,
        "Gather" => ConstantOf(node.Input(1)) is { DataType: DataType.Int64 or DataType.Int32, Dims.Count: <= 1 },
        "Slice" => (ConstantOf(node.Input(3)) is not null || ConstantOf(node.Input(1)) is not null)
                   && (node.Input(4) is null || ConstantOf(node.Input(4)) is { } steps && Longs(steps).All(v => v >= 1)),
        "Split" => node.Outputs.All(o => o is not null),
        // Pads computed at run time are taken as non-negative (Swin's window padding); constant negative ones (crops) are refused.
        "Pad" => (node.Attribute("mode")?.AsString() ?? "constant") == "constant" && node.Input(3) is null
                 && (ConstantOf(node.Input(1)) is not { } pads || Longs(pads).All(p => p >= 0)),
        // The identity when not training or when the ratio is 0 (torchvision's Swin exports training_mode=true with p=0).
        "Dropout" => node.Input(2) is null || ConstantOf(node.Input(2)) is { } training && training.AsSpan<byte>()[0] == 0
                     || ConstantOf(node.Input(1)) is { DataType: DataType.Float } ratio && ratio.ToFloats()[0] == 0f,
        _ => true,
    };

    /// <summary>The constant behind a value: an initializer or a Constant node's tensor (exporters use both).</summary>
    private static Tensor? ConstantOf(Value? v) =>
        v?.Initializer ?? (v?.Producer is { OpType: "Constant", Domain: "" } p ? p.Attribute("value")?.AsTensor() : null);

    private static long[] Longs(Tensor t) => t.DataType == DataType.Int32 ? t.AsSpan<int>().ToArray().Select(v => (long)v).ToArray() : t.AsSpan<long>().ToArray();

    private static void Gather(GradientBuilder b, Node n, Value?[] g)
    {
        Value x = n.Input(0)!;
        var dims = b.Shape(x);
        int rank = dims.Length;
        long axis = n.GetInt("axis", 0);
        if (axis < 0) axis += rank;
        long size = dims[axis];
        var indices = ConstantOf(n.Input(1))!;
        var picked = Longs(indices).Select(i => i < 0 ? i + size : i).ToArray();
        b.Accumulate(x, () =>
        {
            if (indices.Dims.Count == 0)
            {
                // x[..., i, ...]: the gradient goes back into row i, zeros elsewhere.
                var pads = new long[2 * rank];
                pads[axis] = picked[0];
                pads[rank + axis] = size - picked[0] - 1;
                return b.Op("Pad", [b.Op("Unsqueeze", [g[0], b.Ints(axis)]), b.Ints(pads)]);
            }
            // A list of rows (repeats add up): the gathered axis last, times a one-hot [k, size] matrix.
            var oneHot = new float[picked.Length * size];
            for (int k = 0; k < picked.Length; k++) oneHot[k * size + picked[k]] = 1f;
            var perm = Enumerable.Range(0, rank).Where(d => d != axis).Select(d => (long)d).Append(axis).ToArray();
            var inverse = new long[rank];
            for (int d = 0; d < rank; d++) inverse[perm[d]] = d;
            var last = b.Op("Transpose", [g[0]], AttributeValue.Ints("perm", perm));
            var spread = b.Op("MatMul", [last, b.Graph.AddInitializer(b.Graph.UniqueName("grad_onehot"), Tensor.FromFloats([picked.Length, size], oneHot))]);
            return b.Op("Transpose", [spread], AttributeValue.Ints("perm", inverse));
        });
    }

    private static void Slice(GradientBuilder b, Node n, Value?[] g)
    {
        // The slice's gradient put back where it came from, one sliced axis at a time: with step s > 1
        // each row is followed by s − 1 zero rows (patch merging's x[:, 0::2]), then zeros pad it
        // from the start to the axis's extent. Starts and ends may be computed at run time
        // (PyTorch's q|k|v split: dim / 3 · k), so the pads are nodes too, each bound made
        // non-negative and clamped to the axis as Slice does.
        Value x = n.Input(0)!;
        int rank = b.Rank(x);
        var axes = ConstantOf(n.Input(3)) is { } a ? Longs(a) : Enumerable.Range(0, (int)ConstantOf(n.Input(1))!.ElementCount).Select(i => (long)i).ToArray();
        var steps = ConstantOf(n.Input(4)) is { } st ? Longs(st) : axes.Select(_ => 1L).ToArray();
        b.Accumulate(x, () =>
        {
            var shape = b.Op("Shape", [x]);
            var zero = b.Ints(0);
            Value AsInt64(Value v) => ConstantOf(v) is { DataType: DataType.Int64 } ? v : b.Op("Cast", [v], AttributeValue.Int("to", (long)DataType.Int64));
            Value starts = AsInt64(n.Input(1)!), ends = AsInt64(n.Input(2)!);
            Value grad = g[0]!;
            for (int i = 0; i < axes.Length; i++)
            {
                int axis = (int)(axes[i] < 0 ? axes[i] + rank : axes[i]);
                var dim = b.Op("Gather", [shape, b.Ints(axis)]);
                Value Bound(Value all, Value low)
                {
                    var v = b.Op("Gather", [all, b.Ints(i)]);
                    var wrapped = b.Op("Where", [b.Op("Less", [v, zero]), b.Op("Add", [v, dim]), v]);
                    return b.Op("Min", [b.Op("Max", [wrapped, low]), dim]);
                }
                var start = Bound(starts, zero);
                if (steps[i] == 1)
                {
                    grad = PadAxis(b, grad, rank, axis, start, b.Op("Sub", [dim, Bound(ends, start)]));
                    continue;
                }
                var gradShape = b.Op("Shape", [grad]);
                var spaced = b.Op("Pad", [b.Op("Unsqueeze", [grad, b.Ints(axis + 1)]), b.Ints(PadsAt(rank + 1, axis + 1, 0, steps[i] - 1))]);
                var merged = b.Op("Concat", [b.Op("Slice", [gradShape, b.Ints(0), b.Ints(axis)]), b.Op("Mul", [b.Op("Gather", [gradShape, b.Ints(axis)]), b.Ints(steps[i])]),
                                             b.Op("Slice", [gradShape, b.Ints(axis + 1), b.Ints(rank)])], AttributeValue.Int("axis", 0));
                var spread = b.Op("Reshape", [spaced, merged]);
                // Rows start, start + 1, … start + m·s − 1: padded after up to the extent, or the trailing zeros past it cut.
                var past = b.Op("Sub", [dim, b.Op("Add", [start, b.Op("Gather", [b.Op("Shape", [spread]), b.Ints(axis)])])]);
                var padded = PadAxis(b, spread, rank, axis, start, b.Op("Max", [past, zero]));
                grad = b.Op("Slice", [padded, zero, dim, b.Ints(axis)]);
            }
            return grad;
        });
    }

    private static long[] PadsAt(int rank, int axis, long before, long after)
    {
        var pads = new long[2 * rank];
        pads[axis] = before;
        pads[rank + axis] = after;
        return pads;
    }

    /// <summary><paramref name="v"/> padded with zeros along one axis by run-time amounts ([1] int64 each).</summary>
    private static Value PadAxis(GradientBuilder b, Value v, int rank, int axis, Value before, Value after)
    {
        var zero = b.Ints(0);
        var pieces = Enumerable.Repeat(zero, 2 * rank).ToArray();
        pieces[axis] = before;
        pieces[rank + axis] = after;
        return b.Op("Pad", [v, b.Op("Concat", pieces, AttributeValue.Int("axis", 0))]);
    }

    private static void MatMul(GradientBuilder b, Node n, Value?[] g)
    {
        Value a = n.Input(0)!, w = n.Input(1)!, y = n.Output();
        int ra = b.Rank(a), rw = b.Rank(w), ry = b.Rank(y);
        if (ra < 2 || rw < 2) throw new NoGradientRuleException(n);
        // y = a·w over the last two axes, batch axes broadcast: da = g·wᵀ, dw = aᵀ·g, each summed back to its operand's shape.
        b.Accumulate(a, () => b.Unbroadcast(b.Op("MatMul", [g[0], b.SwapLastTwo(w, rw)]), y, a));
        b.Accumulate(w, () => b.Unbroadcast(b.Op("MatMul", [b.SwapLastTwo(a, ra), g[0]]), y, w));
    }

    private static void Gemm(GradientBuilder b, Node n, Value?[] g)
    {
        Value a = n.Input(0)!, w = n.Input(1)!;
        bool transA = n.GetInt("transA", 0) != 0, transB = n.GetInt("transB", 0) != 0;
        float alpha = n.GetFloat("alpha", 1f), beta = n.GetFloat("beta", 1f);
        Value scaled = alpha == 1f ? g[0]! : b.Op("Mul", [g[0], b.Scalar(alpha)]);
        // y = alpha·A'·B' + beta·C with A' = transA ? aᵀ : a: dA' = g·B'ᵀ, dB' = A'ᵀ·g.
        b.Accumulate(a, () => transA
            ? b.Op("Gemm", [w, scaled], AttributeValue.Int("transA", transB ? 1 : 0), AttributeValue.Int("transB", 1))
            : b.Op("Gemm", [scaled, w], AttributeValue.Int("transB", transB ? 0 : 1)));
        b.Accumulate(w, () => transB
            ? b.Op("Gemm", [scaled, a], AttributeValue.Int("transA", 1), AttributeValue.Int("transB", transA ? 1 : 0))
            : b.Op("Gemm", [a, scaled], AttributeValue.Int("transA", transA ? 0 : 1)));
        if (n.Input(2) is { } c)
            b.Accumulate(c, () => b.Unbroadcast(beta == 1f ? g[0]! : b.Op("Mul", [g[0], b.Scalar(beta)]), n.Output(), c));
    }

    private static void Reduce(GradientBuilder b, Node n, Value g, bool mean)
    {
        var x = n.Input(0)!;
        int rank = b.Rank(x);
        long[] axes = n.Attribute("axes")?.AsInts().ToArray() ?? (ConstantOf(n.Input(1)) is { } a ? Longs(a) : null) ?? Enumerable.Range(0, rank).Select(i => (long)i).ToArray();
        bool noop = axes.Length == 0 && n.GetInt("noop_with_empty_axes", 0) != 0;
        if (noop) { b.Accumulate(x, () => g); return; }
        if (axes.Length == 0) axes = Enumerable.Range(0, rank).Select(i => (long)i).ToArray();
        b.Accumulate(x, () =>
        {
            var kept = n.GetInt("keepdims", 1) != 0 ? g : b.Op("Unsqueeze", [g, b.Ints(axes.Select(a => a < 0 ? a + rank : a).OrderBy(a => a).ToArray())]);
            return Spread(b, x, n.Output(), kept, mean);
        });
    }

    /// <summary>A reduction's gradient (<paramref name="kept"/>: reduced axes kept as size 1) spread back over
    /// <paramref name="x"/>; a mean divides by the reduced count, |x| / |y| from the run's shapes.</summary>
    private static Value Spread(GradientBuilder b, Value x, Value y, Value kept, bool mean)
    {
        var spread = b.Op("Expand", [kept, b.Op("Shape", [x])]);
        if (!mean) return spread;
        var count = b.Op("Div", [b.Op("Cast", [b.Op("Size", [x])], AttributeValue.Int("to", (long)DataType.Float)),
                                 b.Op("Cast", [b.Op("Size", [y])], AttributeValue.Int("to", (long)DataType.Float))]);
        return b.Op("Div", [spread, count]);
    }

    private static void LayerNormalization(GradientBuilder b, Node n, Value?[] g)
    {
        Value x = n.Input(0)!, gamma = n.Input(1)!, y = n.Output();
        int rank = b.Rank(x);
        long axis = n.GetInt("axis", -1);
        if (axis < 0) axis += rank;
        float epsilon = n.GetFloat("epsilon", 1e-5f);
        // Recomputed: x̂ = (x − μ)·r, r = 1/√(σ² + ε). dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = g·γ.
        var centred = b.Op("Sub", [x, b.Op("ReduceMean", [x], AttributeValue.Ints("axes", Range(axis, rank)))]);
        var variance = b.Op("ReduceMean", [b.Op("Mul", [centred, centred])], AttributeValue.Ints("axes", Range(axis, rank)));
        var r = b.Op("Reciprocal", [b.Op("Sqrt", [b.Op("Add", [variance, b.Scalar(epsilon)])])]);
        var xhat = b.Op("Mul", [centred, r]);
        b.Accumulate(x, () =>
        {
            var gh = b.Op("Mul", [g[0], gamma]);
            var meanG = b.Op("ReduceMean", [gh], AttributeValue.Ints("axes", Range(axis, rank)));
            var meanGx = b.Op("ReduceMean", [b.Op("Mul", [gh, xhat])], AttributeValue.Ints("axes", Range(axis, rank)));
            return b.Op("Mul", [r, b.Op("Sub", [b.Op("Sub", [gh, meanG]), b.Op("Mul", [xhat, meanGx])])]);
        });
        b.Accumulate(gamma, () => b.Unbroadcast(b.Op("Mul", [g[0], xhat]), y, gamma));
        if (n.Input(2) is { } beta) b.Accumulate(beta, () => b.Unbroadcast(g[0]!, y, beta));
    }

    private static long[] Range(long from, int rank) => Enumerable.Range((int)from, rank - (int)from).Select(i => (long)i).ToArray();
}
