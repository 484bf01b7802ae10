using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Quantization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

public class EmitPortableTests
{
    private static (Model Model, PassContext Context, float[] Input) Fitted(Model model, long[] shape, BitWidths bits)
    {
        var input = TinyModels.Random((int)shape.Aggregate(1L, (a, b) => a * b), seed: 11, scale: 2f);
        var context = PassTestSupport.SelectAndObserve(model, input, shape, bits);
        new FitQuantizers().Run(model, context);
        return (model, context, input);
    }

    [Test]
    public void GoldenGraphForALinearLayer()
    {
        var (model, context, _) = Fitted(TinyModels.MatMul(), [1, 4, 8], BitWidths.W8A8);
        var result = new EmitPortable().Run(model, context);
        new RemoveUnusedConstants().Run(model, context);

        Assert.That(result.Modified);
        Assert.That(GraphPrinter.Print(model.Graph), Is.EqualTo("""
            input %x: float32[batch,4,8]
            %x_quantized = QuantizeLinear(%x, %x_scale, %x_zero_point)
            %x_dequantized = DequantizeLinear(%x_quantized, %x_scale, %x_zero_point)
            %w_dequantized = DequantizeLinear(%w_quantized, %w_scale, %w_zero_point)  {axis=1}
            %y = MatMul(%x_dequantized, %w_dequantized)
            output %y

            """.ReplaceLineEndings()));
        Assert.That(model.Graph.Lookup("w"), Is.Null, "the float weight is gone");
        Assert.That(model.Graph.Lookup("w_quantized")!.Initializer!.DataType, Is.EqualTo(DataType.Int8));
        Assert.That(model.Graph.Lookup("w_scale")!.Initializer!.Dims, Is.EqualTo(new long[] { 6 }));
    }

    /// <summary>ONNX Runtime running the emitted graph computes exactly the simulated
    /// quantization: y = Q(x)·Q(W) with the plan's parameters.</summary>
    [Test]
    public void OnnxRuntimeComputesTheSimulatedQuantization()
    {
        var (model, context, input) = Fitted(TinyModels.MatMul(), [1, 4, 8], BitWidths.W8A8);
        var plan = context.Get<QuantizationPlan>();
        var xq = plan.Activations.Single().Parameters!;
        var wq = plan.Weights.Single().Parameters!;
        var w = model.Graph.Lookup("w")!.Initializer!.ToFloats();

        new EmitPortable().Run(model, context);
        var y = Ort.Run(Ort.Bytes(model), "x", input, [1, 4, 8])[0];

        var xs = (float[])input.Clone();
        xq.Simulate(xs, [1, 4, 8]);
        wq.Simulate(w, [8, 6]);
        for (int t = 0; t < 4; t++)
            for (int n = 0; n < 6; n++)
            {
                float expected = 0;
                for (int k = 0; k < 8; k++) expected += xs[t * 8 + k] * w[k * 6 + n];
                Assert.That(y[t * 6 + n], Is.EqualTo(expected).Within(1e-4), $"y[{t},{n}]");
            }
    }

    [Test]
    public void AttentionGetsQdqOnEveryMatMulInputAndTheResidualStaysFloat()
    {
        var (model, context, input) = Fitted(TinyModels.Attention(), [1, 5, 8], BitWidths.W8A8);
        new EmitPortable().Run(model, context);
        new RemoveUnusedConstants().Run(model, context);

        Assert.That(PassTestSupport.Count(model, "QuantizeLinear"), Is.EqualTo(6), "x, q, kᵀ, probs, v, context");
        Assert.That(PassTestSupport.Count(model, "DequantizeLinear"), Is.EqualTo(6 + 4), "6 activations + 4 weights");
        var residual = model.Graph.Nodes.Single(n => n.Name == "residual");
        Assert.That(residual.Input(1)!.Name, Is.EqualTo("x"), "the residual keeps the float input");
        var outProjWeight = model.Graph.Nodes.Single(n => n.Name == "out_proj").Input(1)!.Producer!;
        Assert.That(outProjWeight.GetInt("axis", -1), Is.EqualTo(0));
        Assert.DoesNotThrow(() => GraphValidator.Validate(model));

        var y = Ort.Run(Ort.Bytes(model), "x", input, [1, 5, 8])[0];
        Assert.That(y.All(float.IsFinite));
    }

    [TestCase(4)]
    [TestCase(6)]
    public void SubEightBitActivationsAreClippedToTheirRange(int bits)
    {
        var (model, context, input) = Fitted(TinyModels.Attention(), [1, 5, 8], new BitWidths(bits, bits));
        new EmitPortable().Run(model, context);

        var clips = model.Graph.Nodes.Where(n => n.OpType == "Clip").ToList();
        Assert.That(clips, Has.Count.EqualTo(5), "q, kᵀ, probs, v, context; the network input x stays 8-bit");
        var codes = Ort.Run(Ort.Bytes(model, clips.Select(c => c.Output())), "x", input, [1, 5, 8], clips.Select(c => c.Output().Name).ToArray());
        foreach (var c in codes) Assert.That(c.Max(), Is.LessThanOrEqualTo((1 << bits) - 1));
        Assert.That(codes.Any(c => c.Max() == (1 << bits) - 1), "the top code is used");

        var weights = model.Graph.Initializers.Where(v => v.Name.EndsWith("_quantized")).ToList();
        Assert.That(weights, Has.Count.EqualTo(4));
        foreach (var w in weights)
            Assert.That(w.Initializer!.AsSpan<sbyte>().ToArray().Max(v => Math.Abs((int)v)), Is.LessThanOrEqualTo((1 << (bits - 1)) - 1));
    }

    [Test]
    public void OpsetsBefore13AreRefusedClearly()
    {
        var (model, context, _) = Fitted(TinyModels.MatMul(opset: 11), [1, 4, 8], BitWidths.W8A8);
        var e = Assert.Throws<OnnxViTQException>(() => new EmitPortable().Run(model, context))!;
        Assert.That(e.Message, Does.Contain("opset 11").And.Contain("13"));
    }

    [Test]
    public void NothingPlannedMeansNotModified()
    {
        var context = new PassContext();
        context.Set(new QuantizationPlan());
        context.Set(new QuantizersFitted());
        Assert.That(new EmitPortable().Run(TinyModels.MatMul(), context).Modified, Is.False);
        Assert.That(new RemoveUnusedConstants().Run(TinyModels.MatMul(), context).Modified, Is.False);
    }
}
