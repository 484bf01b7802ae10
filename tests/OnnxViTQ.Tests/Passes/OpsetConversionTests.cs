using OnnxViTQ.Ir;
using OnnxViTQ.Passes.Canonicalize;
using OnnxViTQ.Tests.Support;
using static OnnxViTQ.Ir.AttributeValue;

namespace OnnxViTQ.Tests.Passes;

/// <summary>
/// Each version adapter against ONNX Runtime: a one-operator model at the old opset (ONNX Runtime
/// implements every opset's meaning) and its converted form give the same outputs on random
/// inputs; what no adapter converts is refused with the node, op and versions named, before the
/// model changes.
/// </summary>
public class OpsetConversionTests
{
    private static readonly long[] Shape = [2, 3, 4, 5];

    /// <summary>x [2,3,4,5] → <paramref name="build"/> → outputs; at <paramref name="opset"/>.</summary>
    private static Model OneOp(long opset, Func<Graph, Value, Value[]> build)
    {
        var g = new Graph("one-op");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, Shape));
        foreach (var y in build(g, x)) g.AddOutput(y);
        return TinyModels.NewModel(g, opset);
    }

    private static Value Op(Graph g, string op, Value?[] inputs, params AttributeValue[] attributes) =>
        g.AddNode(op, inputs, [op.ToLowerInvariant() + "_out"], attributes, name: op.ToLowerInvariant()).Output();

    private static Value Int64s(Graph g, string name, params long[] v) => g.AddInitializer(name, OnnxViTQ.Ir.Tensor.FromInt64s([v.Length], v));

    private static Value FloatInit(Graph g, string name, params float[] v) => g.AddInitializer(name, OnnxViTQ.Ir.Tensor.FromFloats([v.Length], v));

    private static readonly float[] Input = TinyModels.Random(2 * 3 * 4 * 5, 7, 3f);

    /// <summary>Runs the model as built, converts it to <paramref name="target"/> (with ONNX Runtime's
    /// shapes), runs it again: every output equal. Returns the converted model.</summary>
    private static Model ConvertsExactly(Model model, long target, float tolerance = 1e-6f, bool probe = true)
    {
        var before = Ort.Run(Ort.Bytes(model), "x", Input, Shape);
        var summary = OpsetConversion.Convert(model, target, "test.onnx", probe ? values => Canonicalize.ProbeShapes(model, values, "test.onnx") : null);
        Assert.That(model.DefaultOpset, Is.EqualTo(target), summary.ToString());
        var after = Ort.Run(Ort.Bytes(model), "x", Input, Shape);
        Assert.That(after, Has.Length.EqualTo(before.Length));
        for (int i = 0; i < before.Length; i++)
            Assert.That(after[i], Is.EqualTo(before[i]).Within(tolerance), $"output {i} after {summary}");
        return model;
    }

    private static IEnumerable<string> Ops(Model m) => m.Graph.Nodes.Select(n => n.OpType);

    [TestCase(1L, 11)]
    [TestCase(2L, 9)]
    [TestCase(-1L, 12)]
    public void SoftmaxBefore13FlattensAtItsAxis(long axis, long opset)
    {
        foreach (var op in new[] { "Softmax", "LogSoftmax" })
        {
            var m = ConvertsExactly(OneOp(opset, (g, x) => [Op(g, op, [x], Int("axis", axis))]), 13, 1e-5f, probe: false);
            Assert.That(Ops(m), axis == -1 ? Is.EqualTo(new[] { op }) : Does.Contain("Flatten"), op);
        }
    }

    [Test]
    public void SoftmaxOnTheLastAxisStaysOneNodeWhenTheRankIsKnown()
    {
        // PyTorch writes softmax(dim=-1) of a rank-4 tensor as axis=3 before opset 13.
        var m = ConvertsExactly(OneOp(11, (g, x) => [Op(g, "Softmax", [x], Int("axis", 3))]), 13, 1e-6f);
        Assert.That(Ops(m), Is.EqualTo(new[] { "Softmax" }));
        Assert.That(m.Graph.Nodes[0].GetInt("axis", 0), Is.EqualTo(3));
    }

    [Test]
    public void DefaultSoftmaxAxisBecomesExplicit()
    {
        var m = ConvertsExactly(OneOp(9, (g, x) =>
        {
            var flat = Op(g, "Flatten", [x], Int("axis", 1));
            return [g.AddNode("Softmax", [flat], ["p"], name: "softmax").Output()];
        }), 13, 1e-6f);
        Assert.That(m.Graph.Nodes.Single(n => n.OpType == "Softmax").GetInt("axis", -1), Is.EqualTo(1));
    }

    [Test]
    public void AttributesThatBecameInputs()
    {
        ConvertsExactly(OneOp(6 + 1, (g, x) => [Op(g, "Clip", [x], Float("min", -0.5f), Float("max", 0.7f))]), 13);
        ConvertsExactly(OneOp(7, (g, x) => [Op(g, "Clip", [x], Float("max", 0.2f))]), 13);
        ConvertsExactly(OneOp(9, (g, x) => [Op(g, "Pad", [x], Ints("pads", [0, 0, 1, 2, 0, 1, 0, 1]), Float("value", 1.5f))]), 13);
        ConvertsExactly(OneOp(10, (g, x) => [Op(g, "Pad", [x], String("mode", "reflect"), Ints("pads", [0, 0, 1, 1, 0, 0, 2, 1]))]), 13);
        ConvertsExactly(OneOp(9, (g, x) => [Op(g, "Slice", [x], Ints("starts", [1, -3]), Ints("ends", [3, long.MaxValue]), Ints("axes", [1, 3]))]), 13);
        ConvertsExactly(OneOp(9, (g, x) => [Op(g, "ReduceSum", [x], Ints("axes", [1, -1]), Int("keepdims", 0))]), 13);
        ConvertsExactly(OneOp(9, (g, x) => [g.AddNode("TopK", [x], ["values", "indices"], [Int("k", 2), Int("axis", 2)], name: "topk").Output()]), 13);
        ConvertsExactly(OneOp(11, (g, x) =>
        {
            var u = Op(g, "Unsqueeze", [x], Ints("axes", [0, -1]));
            return [g.AddNode("Squeeze", [u], ["s"], [Ints("axes", [0])], name: "squeeze").Output()];
        }), 13);
        var split = ConvertsExactly(OneOp(11, (g, x) => g.AddNode("Split", [x], ["a", "b"], [Int("axis", 1), Ints("split", [1, 2])], name: "split").Outputs.Select(o => o!).ToArray()), 13);
        Assert.That(split.Graph.Nodes.Single().Inputs, Has.Count.EqualTo(2), "the sizes became an input");
    }

    [Test]
    public void DropoutLeavesInferenceGraphs()
    {
        var m = ConvertsExactly(OneOp(9, (g, x) => [Op(g, "Relu", [Op(g, "Dropout", [x], Float("ratio", 0.3f))])]), 13);
        Assert.That(Ops(m), Is.EqualTo(new[] { "Relu" }));
    }

    [Test]
    public void BatchNormalizationLosesSpatial()
    {
        Model Bn(long spatial) => OneOp(7, (g, x) =>
            [Op(g, "BatchNormalization", [x, FloatInit(g, "s", 1.5f, 0.5f, 2f), FloatInit(g, "b", 0.1f, -0.2f, 0.3f), FloatInit(g, "m", 0.2f, 0.1f, -0.1f), FloatInit(g, "v", 1f, 2f, 0.5f)],
                Int("spatial", spatial))]);
        var m = ConvertsExactly(Bn(1), 13, 1e-5f);
        Assert.That(m.Graph.Nodes.Single().Attribute("spatial"), Is.Null);
        var refused = Assert.Throws<OnnxViTQException>(() => OpsetConversion.Convert(Bn(0), 13, "bn.onnx"))!;
        Assert.That(refused.Message, Does.Contain("'batchnormalization'").And.Contain("BatchNormalization-9").And.Contain("spatial=0"));
    }

    [TestCase("nearest")]
    [TestCase("linear")]
    public void UpsampleBecomesResize(string mode)
    {
        var m7 = ConvertsExactly(OneOp(7, (g, x) => [Op(g, "Upsample", [x], String("mode", mode), Floats("scales", [1, 1, 2, 3]))]), 13, 1e-5f);
        Assert.That(Ops(m7), Is.EqualTo(new[] { "Resize" }));
        var m9 = ConvertsExactly(OneOp(9, (g, x) => [Op(g, "Upsample", [x, FloatInit(g, "scales", 1, 1, 2, 2)], String("mode", mode))]), 13, 1e-5f);
        Assert.That(Ops(m9), Is.EqualTo(new[] { "Resize" }));
    }

    [TestCase("nearest", 2f, 3f)]
    [TestCase("nearest", 0.5f, 0.6f)]
    [TestCase("linear", 2f, 1.5f)]
    [TestCase("linear", 0.5f, 2f)]
    public void Resize10KeepsItsSampling(string mode, float sh, float sw) =>
        ConvertsExactly(OneOp(10, (g, x) => [Op(g, "Resize", [x, FloatInit(g, "scales", 1, 1, sh, sw)], String("mode", mode))]), 13, 1e-5f);

    [Test]
    public void ReduceAxesInputsBecomeAttributesBelow18()
    {
        var m = ConvertsExactly(OneOp(18, (g, x) => [Op(g, "ReduceMean", [x, Int64s(g, "axes", -1)], Int("keepdims", 1))]), 17);
        Assert.That(m.Graph.Nodes.Single().Attribute("axes")!.AsInts(), Is.EqualTo(new long[] { -1 }));
        var noop = ConvertsExactly(OneOp(18, (g, x) => [Op(g, "Relu", [Op(g, "ReduceMax", [x], Int("noop_with_empty_axes", 1))])]), 17);
        Assert.That(Ops(noop), Is.EqualTo(new[] { "Relu" }));
        // and back up: what the opset-18 models in models/exports were written with
        var up = ConvertsExactly(OneOp(13, (g, x) => [Op(g, "ReduceMean", [x], Ints("axes", [2, 3]))]), 18);
        Assert.That(up.Graph.Nodes.Single().Inputs, Has.Count.EqualTo(2));
    }

    [Test]
    public void SplitNumOutputsBecomesSizes()
    {
        // opset 18: 5 split in 3 gives 2, 2, 1
        var m = ConvertsExactly(OneOp(18, (g, x) => g.AddNode("Split", [x], ["a", "b", "c"], [Int("axis", 3), Int("num_outputs", 3)], name: "split").Outputs.Select(o => o!).ToArray()), 17);
        Assert.That(m.Graph.Nodes.Single().Attribute("num_outputs"), Is.Null);
    }

    [Test]
    public void PadAxesBecomeFullPads() =>
        ConvertsExactly(OneOp(18, (g, x) => [Op(g, "Pad", [x, Int64s(g, "pads", 1, 2, 0, 1), null, Int64s(g, "axes", 2, -1)])]), 17);

    [TestCase("none")]
    [TestCase("tanh")]
    public void GeluBelow20IsItsErfOrTanhForm(string approximate)
    {
        var m = ConvertsExactly(OneOp(20, (g, x) => [Op(g, "Gelu", [x], String("approximate", approximate))]), 17, 1e-5f);
        Assert.That(Ops(m), Does.Contain(approximate == "none" ? "Erf" : "Tanh").And.Not.Contain("Gelu"));
    }

    [Test]
    public void ErfGeluFusesGoingTo20AndComesBack()
    {
        var m = OneOp(17, (g, x) =>
        {
            var div = g.AddNode("Div", [x, g.AddInitializer("sqrt2", OnnxViTQ.Ir.Tensor.Scalar(1.4142135f))], ["d"]).Output();
            var erf = g.AddNode("Erf", [div], ["e"]).Output();
            var add = g.AddNode("Add", [erf, g.AddInitializer("one", OnnxViTQ.Ir.Tensor.Scalar(1f))], ["a"]).Output();
            var mul = g.AddNode("Mul", [x, add], ["m"]).Output();
            return [g.AddNode("Mul", [mul, g.AddInitializer("half", OnnxViTQ.Ir.Tensor.Scalar(0.5f))], ["y"]).Output()];
        });
        var before = Ort.Run(Ort.Bytes(m), "x", Input, Shape);
        var summary = OpsetConversion.Convert(m, 20, "gelu.onnx", fuseGelu: true);
        Assert.That(Ops(m), Is.EqualTo(new[] { "Gelu" }), summary.ToString());
        Assert.That(m.Graph.Initializers, Is.Empty, "the pattern's constants went with it");
        Assert.That(m.Graph.Outputs.Single().Name, Is.EqualTo("y"));
        Assert.That(Ort.Run(Ort.Bytes(m), "x", Input, Shape)[0], Is.EqualTo(before[0]).Within(1e-5f));
        ConvertsExactly(m, 17, 1e-5f);
    }

    [Test]
    public void MishBelow18IsSoftplusTanh() =>
        ConvertsExactly(OneOp(18, (g, x) => [Op(g, "Mish", [x])]), 17, 1e-5f);

    [Test]
    public void WhatNoAdapterConvertsIsRefusedNamingNodeOpAndVersions()
    {
        var antialias = OneOp(18, (g, x) => [Op(g, "Resize", [x, null, FloatInit(g, "scales", 1, 1, 2, 2)], String("mode", "linear"), Int("antialias", 1))]);
        var e = Assert.Throws<OnnxViTQException>(() => OpsetConversion.Convert(antialias, 17, "aa.onnx"))!;
        Assert.That(e.Message, Does.Contain("'aa.onnx'").And.Contain("node 'resize' (Resize)").And.Contain("from opset 18 to 17").And.Contain("antialias"));
        Assert.That(antialias.DefaultOpset, Is.EqualTo(18), "refused before anything changed");
        Assert.That(antialias.Graph.Nodes.Single().GetInt("antialias", 0), Is.EqualTo(1));

        var col2im = OneOp(18, (g, x) => [Op(g, "Col2Im", [x, Int64s(g, "image", 4, 4), Int64s(g, "block", 2, 2)])]);
        Assert.That(Assert.Throws<OnnxViTQException>(() => OpsetConversion.Convert(col2im, 17, "c.onnx"))!.Message,
            Does.Contain("node 'col2im' (Col2Im)").And.Contain("does not exist before opset 18"));

        var unknown = OneOp(9, (g, x) => [Op(g, "Frobnicate", [x])]);
        Assert.That(Assert.Throws<OnnxViTQException>(() => OpsetConversion.Convert(unknown, 13, "u.onnx"))!.Message,
            Does.Contain("node 'frobnicate' uses Frobnicate, which ONNX opset 9 does not define"));

        Assert.That(Assert.Throws<OnnxViTQException>(() => OpsetConversion.Convert(OneOp(6, (g, x) => [Op(g, "Relu", [x])]), 13, "old.onnx"))!.Message,
            Does.Contain("opset 6").And.Contain("older than 7"));
        Assert.That(Assert.Throws<OnnxViTQException>(() => OpsetConversion.Convert(OneOp(22, (g, x) => [Op(g, "Relu", [x])]), 17, "new.onnx"))!.Message,
            Does.Contain("opset 22").And.Contain("up to opset 21"));
    }

    [Test]
    public void ModelsInsideTheCompilersRangeAreLeftAlone()
    {
        var m = OneOp(15, (g, x) => [Op(g, "Relu", [x])]);
        var summary = OpsetConversion.ToCompilerRange(m, "m.onnx");
        Assert.That(summary.Changed, Is.False);
        Assert.That(m.DefaultOpset, Is.EqualTo(15));
        Assert.That(OpsetConversion.CompilerOpset(9), Is.EqualTo(13));
        Assert.That(OpsetConversion.CompilerOpset(20), Is.EqualTo(17));
    }
}
