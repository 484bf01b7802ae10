using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Ir;
using OnnxViTQ.Reconstruction;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Reconstruction;

/// <summary>
/// Every gradient rule against central finite differences, both run by ONNX Runtime: a graph with
/// the op, loss = Σ y ⊙ R for a fixed random R (so the gradient is the op's vector-Jacobian product
/// with R), differentiated by <see cref="GradientBuilder"/>; each input element is then nudged by
/// ±h and the loss re-run.
/// </summary>
public class GradientRuleTests
{
    /// <summary>A small graph: inputs by shape (and how to fill them), nodes added by <c>build</c>, y its result.</summary>
    private sealed record Case(string Name, (string Name, long[] Shape, Func<int, float[]>? Fill)[] Inputs, Func<Graph, Value[], Value> Build, bool Initializers = false);

    private static float[] Rand(int n, int seed, float lo = -1, float hi = 1)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(lo + (hi - lo) * rng.NextDouble())).ToArray();
    }

    private static Value N(Graph g, string op, Value?[] inputs, params AttributeValue[] attributes) => g.AddNode(op, inputs, [op.ToLowerInvariant()], attributes).Output();

    private static Value C(Graph g, float[] values, params long[] dims) => g.AddInitializer(g.UniqueName("c"), Tensor.FromFloats(dims, values));

    private static Value I(Graph g, params long[] values) => g.AddInitializer(g.UniqueName("i"), Tensor.FromInt64s([values.Length], values));

    private static IEnumerable<TestCaseData> Cases()
    {
        Func<int, float[]>? positive = n => Rand(n, 7, 0.5f, 2f);
        Func<int, float[]>? awayFromZero = n => Rand(n, 8, 0.2f, 1f).Select((v, i) => i % 2 == 0 ? v : -v).ToArray();
        var cases = new Case[]
        {
            new("Add, broadcast over leading and size-1 axes", [("a", [2, 3, 4], null), ("b", [1, 3, 1], null), ("c", [4], null)], (g, x) => N(g, "Add", [N(g, "Add", [x[0], x[1]]), x[2]])),
            new("Sub", [("a", [2, 3], null), ("b", [3], null)], (g, x) => N(g, "Sub", [x[0], x[1]])),
            new("Mul, broadcast", [("a", [2, 3, 4], null), ("b", [4], null)], (g, x) => N(g, "Mul", [x[0], x[1]])),
            new("Div", [("a", [2, 3], null), ("b", [2, 3], positive)], (g, x) => N(g, "Div", [x[0], x[1]])),
            new("Div by a broadcast scalar", [("a", [2, 3], null), ("b", [1], positive)], (g, x) => N(g, "Div", [x[0], x[1]])),
            new("MatMul, weight broadcast over the batch", [("a", [2, 3, 4], null), ("w", [4, 5], null)], (g, x) => N(g, "MatMul", [x[0], x[1]])),
            new("MatMul, attention-shaped", [("q", [2, 2, 3, 4], null), ("k", [2, 2, 4, 3], null)], (g, x) => N(g, "MatMul", [x[0], x[1]])),
            new("Gemm, transB, alpha, beta, bias", [("a", [3, 4], null), ("w", [5, 4], null), ("c", [5], null)],
                (g, x) => N(g, "Gemm", [x[0], x[1], x[2]], AttributeValue.Int("transB", 1), AttributeValue.Float("alpha", 0.5f), AttributeValue.Float("beta", 2f))),
            new("Gemm, transA", [("a", [4, 3], null), ("w", [4, 5], null)], (g, x) => N(g, "Gemm", [x[0], x[1]], AttributeValue.Int("transA", 1))),
            new("Softmax, last axis", [("x", [2, 3, 5], n => Rand(n, 3, -2, 2))], (g, x) => N(g, "Softmax", [x[0]], AttributeValue.Int("axis", -1))),
            new("Softmax, axis 1", [("x", [2, 3, 4], n => Rand(n, 4, -2, 2))], (g, x) => N(g, "Softmax", [x[0]], AttributeValue.Int("axis", 1))),
            new("Erf", [("x", [2, 5], null)], (g, x) => N(g, "Erf", [x[0]])),
            new("Tanh", [("x", [2, 5], null)], (g, x) => N(g, "Tanh", [x[0]])),
            new("Sigmoid", [("x", [2, 5], null)], (g, x) => N(g, "Sigmoid", [x[0]])),
            new("Exp", [("x", [2, 5], null)], (g, x) => N(g, "Exp", [x[0]])),
            new("Relu", [("x", [2, 5], awayFromZero)], (g, x) => N(g, "Relu", [x[0]])),
            new("Sqrt", [("x", [2, 5], positive)], (g, x) => N(g, "Sqrt", [x[0]])),
            new("Pow by a constant", [("x", [2, 5], positive)], (g, x) => N(g, "Pow", [x[0], C(g, [3f])])),
            new("Neg and Identity", [("x", [2, 5], null)], (g, x) => N(g, "Identity", [N(g, "Neg", [x[0]])])),
            new("Clip inside and outside its range", [("x", [2, 5], n => Rand(n, 9, -2, 2))], (g, x) => N(g, "Clip", [x[0], C(g, [-0.75f]), C(g, [0.9f])])),
            new("Reshape and Transpose", [("x", [2, 3, 4], null)],
                (g, x) => N(g, "Transpose", [N(g, "Reshape", [x[0], I(g, 2, 3, 2, 2)])], AttributeValue.Ints("perm", [0, 2, 1, 3]))),
            new("Flatten, Unsqueeze, Squeeze", [("x", [2, 3, 4], null)],
                (g, x) => N(g, "Squeeze", [N(g, "Unsqueeze", [N(g, "Flatten", [x[0]], AttributeValue.Int("axis", 1)), I(g, 1)]), I(g, 1)])),
            new("Gather, a scalar index (the class token)", [("x", [2, 4, 3], null)], (g, x) => N(g, "Gather", [x[0], g.AddInitializer("idx", Tensor.FromInt64s([], [0]))], AttributeValue.Int("axis", 1))),
            new("Gather, a list with a repeat and a negative index", [("x", [2, 4, 3], null)], (g, x) => N(g, "Gather", [x[0], I(g, 3, 1, 3, -4)], AttributeValue.Int("axis", 1))),
            new("Slice on two axes, negative end", [("x", [2, 5, 4], null)], (g, x) => N(g, "Slice", [x[0], I(g, 1, 1), I(g, -1, 3), I(g, 1, 2)])),
            new("Concat, then Split into three with one piece unused", [("a", [2, 2, 3], null), ("b", [2, 3, 3], null)], (g, x) =>
            {
                var joined = N(g, "Concat", [x[0], x[1]], AttributeValue.Int("axis", 1));
                var split = g.AddNode("Split", [joined, I(g, 1, 2, 2)], ["p0", "p1", "p2"], [AttributeValue.Int("axis", 1)]);
                return N(g, "Add", [N(g, "Mul", [split.Outputs[0], C(g, [2f])]), split.Outputs[2]!]);
            }),
            new("Slice with steps (Swin's patch merging x[:, 0::2, 1::2])", [("x", [2, 5, 4, 3], null)], (g, x) => N(g, "Slice", [x[0], I(g, 0, 1), I(g, 9, 9), I(g, 1, 2), I(g, 2, 2)])),
            new("Slice with a step whose last row is the axis's last", [("x", [2, 7], null)], (g, x) => N(g, "Slice", [x[0], I(g, 0), I(g, 7), I(g, 1), I(g, 3)])),
            new("Slice with bounds computed at run time (PyTorch's q|k|v split)", [("x", [2, 3, 6], null)], (g, x) =>
            {
                var third = N(g, "Div", [N(g, "Gather", [N(g, "Shape", [x[0]]), I(g, 2)]), I(g, 3)]);
                return N(g, "Slice", [x[0], third, N(g, "Mul", [third, I(g, 2)]), I(g, -1)]);
            }),
            new("Pad, constant pads", [("x", [2, 3, 4], null)], (g, x) => N(g, "Pad", [x[0], I(g, 0, 1, 0, 0, 2, 3)])),
            new("Pad with pads computed at run time (Swin's window padding)", [("x", [2, 3, 5], null)], (g, x) =>
            {
                // pad the last axis up to a multiple of 4: (4 − 5 % 4) % 4 = 3.
                var last = N(g, "Gather", [N(g, "Shape", [x[0]]), I(g, 2)]);
                var extra = N(g, "Mod", [N(g, "Sub", [I(g, 4), N(g, "Mod", [last, I(g, 4)])]), I(g, 4)]);
                return N(g, "Pad", [x[0], N(g, "Concat", [I(g, 0, 0, 0, 0, 0), extra], AttributeValue.Int("axis", 0))]);
            }),
            new("Expand", [("x", [1, 3, 1], null)], (g, x) => N(g, "Expand", [x[0], I(g, 2, 3, 4)])),
            new("Where with a constant mask (Swin's shifted-window mask)", [("a", [2, 3], null), ("b", [3], null)],
                (g, x) => N(g, "Where", [g.AddInitializer("mask", Tensor.From(DataType.Bool, [2, 3], new byte[] { 1, 0, 1, 0, 1, 1 }.AsSpan())), x[0], x[1]])),
            new("Cast to float", [("x", [2, 3], null)], (g, x) => N(g, "Cast", [x[0]], AttributeValue.Int("to", (long)DataType.Float))),
            new("ReduceMean, keepdims", [("x", [2, 3, 4], null)], (g, x) => N(g, "ReduceMean", [x[0]], AttributeValue.Ints("axes", [-1]))),
            new("ReduceMean over two axes, no keepdims", [("x", [2, 3, 4], null)],
                (g, x) => N(g, "ReduceMean", [x[0]], AttributeValue.Ints("axes", [0, 2]), AttributeValue.Int("keepdims", 0))),
            new("GlobalAveragePool", [("x", [2, 3, 2, 4], null)], (g, x) => N(g, "GlobalAveragePool", [x[0]])),
            new("ReduceSum, axes as input", [("x", [2, 3, 4], null)], (g, x) => N(g, "ReduceSum", [x[0], I(g, 1)], AttributeValue.Int("keepdims", 0))),
            new("LayerNormalization, scale and bias", [("x", [2, 3, 6], n => Rand(n, 5, -2, 2)), ("gamma", [6], null), ("beta", [6], null)],
                (g, x) => N(g, "LayerNormalization", [x[0], x[1], x[2]], AttributeValue.Int("axis", -1), AttributeValue.Float("epsilon", 1e-5f))),
            new("LayerNorm as PyTorch decomposes it at opset 13", [("x", [2, 3, 6], n => Rand(n, 6, -2, 2)), ("gamma", [6], null), ("beta", [6], null)], (g, x) =>
            {
                var centred = N(g, "Sub", [x[0], N(g, "ReduceMean", [x[0]], AttributeValue.Ints("axes", [-1]))]);
                var variance = N(g, "ReduceMean", [N(g, "Pow", [centred, C(g, [2f])])], AttributeValue.Ints("axes", [-1]));
                var normed = N(g, "Div", [centred, N(g, "Sqrt", [N(g, "Add", [variance, C(g, [1e-5f])])])]);
                return N(g, "Add", [N(g, "Mul", [normed, x[1]]), x[2]]);
            }),
            new("GELU as exported (x·½·(1 + erf(x/√2)))", [("x", [2, 5], n => Rand(n, 10, -3, 3))], (g, x) =>
                N(g, "Mul", [N(g, "Mul", [x[0], N(g, "Add", [N(g, "Erf", [N(g, "Div", [x[0], C(g, [MathF.Sqrt(2)])])]), C(g, [1f])])]), C(g, [0.5f])])),
            new("MLP with weights as initializers: LayerNorm → Linear → GELU → Linear", [("x", [2, 3, 4], n => Rand(n, 11, -2, 2))], (g, x) =>
            {
                var ln = N(g, "LayerNormalization", [x[0], g.AddInitializer("ln_w", Tensor.FromFloats([4], Rand(4, 12, 0.5f, 1.5f))), g.AddInitializer("ln_b", Tensor.FromFloats([4], Rand(4, 13)))]);
                var h = N(g, "Add", [N(g, "MatMul", [ln, g.AddInitializer("fc1_w", Tensor.FromFloats([4, 6], Rand(24, 14)))]), g.AddInitializer("fc1_b", Tensor.FromFloats([6], Rand(6, 15)))]);
                var gelu = N(g, "Mul", [N(g, "Mul", [h, N(g, "Add", [N(g, "Erf", [N(g, "Div", [h, C(g, [MathF.Sqrt(2)])])]), C(g, [1f])])]), C(g, [0.5f])]);
                return N(g, "Add", [N(g, "MatMul", [gelu, g.AddInitializer("fc2_w", Tensor.FromFloats([6, 4], Rand(24, 16)))]), x[0]]);
            }, Initializers: true),
        };
        return cases.Select(c => new TestCaseData(c).SetName($"MatchesFiniteDifferences({c.Name})"));
    }

    [TestCaseSource(nameof(Cases))]
    public void MatchesFiniteDifferences(object boxed)
    {
        var c = (Case)boxed;
        var g = new Graph("grad");
        var inputs = c.Inputs.Select(i => g.AddInput(i.Name, TensorTypeInfo.Of(DataType.Float, i.Shape))).ToArray();
        var data = c.Inputs.Select((i, k) => (i.Fill ?? (n => Rand(n, 100 + k)))((int)i.Shape.Aggregate(1L, (a, d) => a * d))).ToArray();
        var y = c.Build(g, inputs);
        var model = TinyModels.NewModel(g);
        var feeds = c.Inputs.Select((i, k) => (i.Name, data[k], i.Shape)).ToList();
        var yShape = ValueShapes.Run(model, [y], feeds, c.Name).Of(y);
        var r = g.AddInitializer("R", Tensor.FromFloats(yShape, Rand((int)yShape.Aggregate(1L, (a, d) => a * d), 42)));
        var loss = N(g, "ReduceSum", [N(g, "Mul", [y, r])], AttributeValue.Int("keepdims", 0));
        g.AddOutput(loss);
        var forward = OnnxModelWriter.ToBytes(model);

        var wrt = inputs.Concat(c.Initializers ? g.Initializers.Where(v => v.Name.Contains("_w") || v.Name.Contains("_b")) : []).ToList();
        var grads = GradientBuilder.Build(g, loss, wrt, values => ValueShapes.Run(model, values, feeds, c.Name));
        var outputs = RunAll(OnnxModelWriter.ToBytes(model, grads), feeds, grads.Select(v => v.Name).ToArray());

        using var session = new InferenceSession(forward, Ort.Options());
        double Loss(IReadOnlyList<(string, float[], long[])> f) => RunAll(session, f, [loss.Name])[0][0];
        for (int k = 0; k < wrt.Count; k++)
        {
            bool isInput = k < inputs.Length;
            float[] values = isInput ? data[k] : wrt[k].Initializer!.ToFloats();
            for (int e = 0; e < values.Length; e++)
            {
                const float h = 1e-2f;
                double Nudged(float delta)
                {
                    if (isInput)
                    {
                        var copy = (float[])data[k].Clone();
                        copy[e] += delta;
                        return Loss(feeds.Select((f, j) => j == k ? (f.Name, copy, f.Shape) : f).ToList());
                    }
                    var w = (float[])values.Clone();
                    w[e] += delta;
                    var original = wrt[k].Initializer!;
                    g.SetInitializer(wrt[k], Tensor.FromFloats(original.Dims, w));
                    using var s = new InferenceSession(OnnxModelWriter.ToBytes(model), Ort.Options());
                    g.SetInitializer(wrt[k], original);
                    return RunAll(s, feeds, [loss.Name])[0][0];
                }
                double numeric = (Nudged(h) - Nudged(-h)) / (2 * h);
                Assert.That(outputs[k][e], Is.EqualTo(numeric).Within(2e-3 + 1e-2 * Math.Abs(numeric)), $"d loss / d {wrt[k].Name}[{e}]");
            }
        }
    }

    /// <summary>Round goes straight through (AdaRound/LSQ training): its gradient is the incoming one.</summary>
    [Test]
    public void RoundIsStraightThrough()
    {
        var g = new Graph("round");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, 2, 3));
        var loss = N(g, "ReduceSum", [N(g, "Mul", [N(g, "Round", [N(g, "Mul", [x, C(g, [4f])])]), C(g, [1f, 2f, 3f, 4f, 5f, 6f], 2, 3)])], AttributeValue.Int("keepdims", 0));
        g.AddOutput(loss);
        var model = TinyModels.NewModel(g);
        var feeds = new List<(string, float[], long[])> { ("x", Rand(6, 1), [2, 3]) };
        var grads = GradientBuilder.Build(g, loss, [x], values => ValueShapes.Run(model, values, feeds, "round"));
        var dx = RunAll(OnnxModelWriter.ToBytes(model, grads), feeds, [grads[0].Name])[0];
        Assert.That(dx, Is.EqualTo(new[] { 4f, 8f, 12f, 16f, 20f, 24f }).Within(1e-5));
    }

    /// <summary>A node without a rule on the path is named, and the graph is left as it was.</summary>
    [Test]
    public void AnOpWithoutARuleIsNamedBeforeTheGraphChanges()
    {
        var g = new Graph("norule");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, 2, 3));
        var picked = g.AddNode("CumSum", [x, I(g, 1)], ["running"], name: "running_total").Output();
        var loss = N(g, "ReduceSum", [N(g, "Mul", [picked, picked])], AttributeValue.Int("keepdims", 0));
        g.AddOutput(loss);
        var model = TinyModels.NewModel(g);
        int nodes = g.Nodes.Count, initializers = g.Initializers.Count;
        var e = Assert.Throws<NoGradientRuleException>(() => GradientBuilder.Build(g, loss, [x], values => ValueShapes.Run(model, values, [("x", Rand(6, 1), [2, 3])], "norule")))!;
        Assert.That(e.Message, Is.EqualTo("no gradient rule for CumSum (node 'running_total')"));
        Assert.That((g.Nodes.Count, g.Initializers.Count), Is.EqualTo((nodes, initializers)));
    }

    /// <summary>Real exports: d logits·R / d (a weight) from the head back to the first block's
    /// attention input projection, against finite differences on a few elements of each.</summary>
    [TestCase("vit.opset17.onnx")]
    [TestCase("vit.opset13.onnx")]
    [TestCase("deit.opset13.onnx")]
    [TestCase("swin.opset17.onnx")]
    public void DifferentiatesARealExport(string file)
    {
        var model = OnnxModelReader.Load(Repo.Model(file));
        var g = model.Graph;
        var input = g.Inputs[0];
        var (images, shape) = Ort.CalibrationSamples(2);
        var logits = g.Outputs[0];
        var feeds = new List<(string, float[], long[])> { (input.Name, images, shape) };
        var shapes0 = ValueShapes.Run(model, [logits], feeds, "vit");
        var r = g.AddInitializer("R", Tensor.FromFloats(shapes0.Of(logits), Rand((int)shapes0.Of(logits).Aggregate(1L, (a, d) => a * d), 3)));
        var loss = N(g, "ReduceSum", [N(g, "Mul", [logits, r])], AttributeValue.Int("keepdims", 0));
        g.RemoveOutput(logits);
        g.AddOutput(loss);
        Func<IReadOnlyList<Value>, ValueShapes> shapes = values => ValueShapes.Run(model, values, feeds, "vit");
        var weights = g.Nodes.Where(n => n.OpType is "Gemm" or "MatMul")
            .Select(n => n.Inputs.FirstOrDefault(i => i?.Initializer is { Dims.Count: 2 })).OfType<Value>().ToList();
        var chosen = new[] { weights[0], weights[weights.Count / 2], weights[^1] };
        var grads = GradientBuilder.Build(g, loss, chosen, shapes);
        var computed = RunAll(OnnxModelWriter.ToBytes(model, grads), feeds, grads.Select(v => v.Name).ToArray());
        for (int k = 0; k < chosen.Length; k++)
        {
            var weight = chosen[k];
            var original = weight.Initializer!;
            var values = original.ToFloats();
            foreach (int e in new[] { 0, 17, values.Length - 1 })
            {
                double At(float delta)
                {
                    var w = (float[])values.Clone();
                    w[e] += delta;
                    g.SetInitializer(weight, Tensor.FromFloats(original.Dims, w));
                    using var s = new InferenceSession(OnnxModelWriter.ToBytes(model), Ort.Options());
                    g.SetInitializer(weight, original);
                    return RunAll(s, feeds, [loss.Name])[0][0];
                }
                double numeric = (At(1e-2f) - At(-1e-2f)) / 2e-2;
                Assert.That(computed[k][e], Is.EqualTo(numeric).Within(5e-3 + 2e-2 * Math.Abs(numeric)), $"d loss / d {weight.Name}[{e}]");
            }
        }
    }

    private static float[][] RunAll(byte[] model, IReadOnlyList<(string Name, float[] Data, long[] Shape)> feeds, string[] outputs)
    {
        using var session = new InferenceSession(model, Ort.Options());
        return RunAll(session, feeds, outputs);
    }

    private static float[][] RunAll(InferenceSession session, IReadOnlyList<(string Name, float[] Data, long[] Shape)> feeds, string[] outputs) =>
        OrtRuntime.Run(session, feeds, outputs);
}
