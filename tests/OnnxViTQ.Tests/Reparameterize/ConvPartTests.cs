using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Passes.Reparameterize;
using OnnxViTQ.Quantization;
using OnnxViTQ.Tests.Passes;
using OnnxViTQ.Tests.Support;
using static OnnxViTQ.Ir.AttributeValue;

namespace OnnxViTQ.Tests.Reparameterize;

/// <summary>
/// The passes for a hybrid's convolutional part on a depthwise-separable block built with the IR:
/// x → 1×1 conv (output channels 100× apart) → act → depthwise 3×3 → ReLU → 1×1 conv.
/// </summary>
public class ConvPartTests
{
    private static readonly long[] Shape = [2, 4, 6, 6];
    private static readonly float[] Input = TinyModels.Random(2 * 4 * 6 * 6, 3, 2f).Select(v => v + 0.7f).ToArray();

    /// <summary>The block; <paramref name="activation"/> between the expansion and the depthwise conv.</summary>
    private static Model Block(string activation = "Relu")
    {
        var g = new Graph("block");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, Shape));
        // expansion 4 → 8 with output channel c scaled by 10^(c/3.5 − 1): ranges 0.1 … 10
        var w1 = TinyModels.Random(8 * 4, 11).Select((v, i) => v * MathF.Pow(10, (i / 4) / 3.5f - 1)).ToArray();
        var e = g.AddNode("Conv", [x, g.AddInitializer("w1", OnnxViTQ.Ir.Tensor.FromFloats([8, 4, 1, 1], w1)), g.AddInitializer("b1", OnnxViTQ.Ir.Tensor.FromFloats([8], TinyModels.Random(8, 12, 0.5f)))],
            ["expanded"], name: "expand").Output();
        var a = g.AddNode(activation, [e], ["activated"], name: "act").Output();
        var d = g.AddNode("Conv", [a, g.AddInitializer("w2", OnnxViTQ.Ir.Tensor.FromFloats([8, 1, 3, 3], TinyModels.Random(8 * 9, 13))), g.AddInitializer("b2", OnnxViTQ.Ir.Tensor.FromFloats([8], TinyModels.Random(8, 14, 0.5f)))],
            ["depthwise"], [Int("group", 8), Ints("pads", [1, 1, 1, 1]), Ints("kernel_shape", [3, 3])], name: "dw").Output();
        var r = g.AddNode("Relu", [d], ["dw_relu"], name: "dw_act").Output();
        var y = g.AddNode("Conv", [r, g.AddInitializer("w3", OnnxViTQ.Ir.Tensor.FromFloats([5, 8, 1, 1], TinyModels.Random(5 * 8, 15)))], ["y"], name: "project").Output();
        g.AddOutput(y);
        return TinyModels.NewModel(g, 17);
    }

    private static float[] Run(Model m) => Ort.Run(Ort.Bytes(m), "x", Input, Shape)[0];

    private static float[] ChannelMaxAbs(Model m, string weight, int axis)
    {
        var t = m.Graph.Lookup(weight)!.Initializer!;
        return AxisLayout.MaxAbs(t.ToFloats(), t.Dims.ToArray(), axis);
    }

    [Test]
    public void EqualizationIsExactAndBalancesChannelRanges()
    {
        var m = Block();
        var before = Run(m);
        float spreadBefore = ChannelMaxAbs(m, "w1", 0).Max() / ChannelMaxAbs(m, "w1", 0).Min();
        var context = new PassContext();
        Assert.That(new EqualizeConvPairs().Run(m, context).Modified);
        Assert.That(Run(m), Is.EqualTo(before).Within(1e-4f), "the same function");
        // both pairs (expand → dw, dw → project) equalized: each channel's range is shared
        var r1 = ChannelMaxAbs(m, "w1", 0);
        var r2 = ChannelMaxAbs(m, "w2", 0);
        for (int c = 0; c < 8; c++) Assert.That(r1[c] / r2[c], Is.EqualTo(1f).Within(0.05f), $"channel {c}");
        Assert.That(r1.Max() / r1.Min(), Is.LessThan(spreadBefore / 3), "the expansion's channels are closer together");
        Assert.That(context.Diagnostics.Single().Message, Does.Contain("equalized 2 convolution pairs"));
    }

    [Test]
    public void HardSwishIsNotRescaled()
    {
        var m = Block("HardSwish");
        var w1 = m.Graph.Lookup("w1")!.Initializer!.ToFloats();
        new EqualizeConvPairs().Run(m, new PassContext());
        Assert.That(m.Graph.Lookup("w1")!.Initializer!.ToFloats(), Is.EqualTo(w1), "hard-swish(x/s) ≠ hard-swish(x)/s: the pair is left alone");
    }

    [Test]
    public void DepthwiseInputsAreQuantizedPerChannelInOnnxRuntimeAsSimulated()
    {
        var m = Block("HardSwish");
        var context = PassTestSupport.SelectAndObserve(m, Input, Shape);
        var plan = context.Get<QuantizationPlan>();
        var dwInput = plan.For(m.Graph.Lookup("activated")!);
        Assert.That(dwInput.Role, Is.EqualTo(TensorRole.DepthwiseInput));
        Assert.That(dwInput.Spec!.Option("granularity"), Is.EqualTo("channel"));
        Assert.That(plan.For(m.Graph.Lookup("dw_relu")!).Role, Is.EqualTo(TensorRole.ConvInput));
        new FitQuantizers().Run(m, context);
        var q = (UniformQuantizer)plan.For(m.Graph.Lookup("activated")!).Parameters!;
        Assert.That(q.Axis, Is.EqualTo(1));
        Assert.That(q.Scales, Has.Count.EqualTo(8));
        Assert.That(q.Scales.Max() / q.Scales.Min(), Is.GreaterThan(10), "channel ranges 10× apart: one range would waste most levels");

        // Emitted as QuantizeLinear/DequantizeLinear per axis, ONNX Runtime computes what Simulate
        // does (on the emitted model's own input to it: the layers before are quantized too).
        new EmitPortable().Run(m, context);
        var dq = m.Graph.Nodes.Single(n => n.OpType == "DequantizeLinear" && n.Input(0)!.Producer is { OpType: "QuantizeLinear" } ql && ql.Input(0)!.Name == "activated");
        Assert.That(dq.GetInt("axis", -1), Is.EqualTo(1));
        var run = Ort.RunWithShapes(Ort.Bytes(m, [m.Graph.Lookup("activated")!, dq.Output()]), "x", Input, Shape, ["activated", dq.Output().Name]);
        var simulated = (float[])run[0].Data.Clone();
        q.Simulate(simulated, run[0].Shape);
        Assert.That(run[1].Data, Is.EqualTo(simulated).Within(1e-6f));
    }

    [Test]
    public void BiasCorrectionRemovesTheWeightsMeanOutputShift()
    {
        // 3-bit weights: a visible shift; the input has a non-zero mean, which carries it.
        var m = Block();
        var context = PassTestSupport.SelectAndObserve(m, Input, Shape, BitWidths.Parse("W3A8"));
        new FitQuantizers().Run(m, context);
        var plan = context.Get<QuantizationPlan>();
        var fp = Run(m);

        float[] WeightsOnlyOutput(Model model)
        {
            var copy = OnnxViTQ.Serialization.OnnxModelReader.Parse(Ort.Bytes(model));
            foreach (var name in new[] { "w1", "w2", "w3" })
            {
                var v = copy.Graph.Lookup(name)!;
                var w = v.Initializer!.ToFloats();
                plan.For(m.Graph.Lookup(name)!).Parameters!.Simulate(w, v.Initializer.Dims.ToArray());
                copy.Graph.SetInitializer(v, OnnxViTQ.Ir.Tensor.FromFloats(v.Initializer.Dims, w));
            }
            return Run(copy);
        }
        static double MeanShift(float[] a, float[] b) => Math.Abs(a.Zip(b, (x, y) => (double)x - y).Average());

        double before = MeanShift(WeightsOnlyOutput(m), fp);
        Assert.That(new CorrectConvBias().Run(m, context).Modified);
        double after = MeanShift(WeightsOnlyOutput(m), fp);
        Assert.That(after, Is.LessThan(before / 2), $"mean output shift {before:G3} → {after:G3}");
        Assert.That(m.Graph.Nodes.Single(n => n.Name == "project").Input(2), Is.Not.Null, "a bias where there was none");
    }
}
