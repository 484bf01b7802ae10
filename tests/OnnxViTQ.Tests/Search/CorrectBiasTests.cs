using OnnxViTQ.Capture;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.Passes;
using OnnxViTQ.Passes.Search;
using OnnxViTQ.Patterns;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Search;

public class CorrectBiasTests
{
    /// <summary>
    /// After correct-bias on the real ViT at W4A4, every corrected output channel has ~zero mean
    /// error over all calibration rows, computed here independently of the pass: every row's
    /// Q(x)·Q(W) − x·W, in double, plus the bias change the graph now holds. Channels left alone
    /// had a mean error within 3 standard errors of zero. Covers Gemm's C (attention projection,
    /// head) and the Add after a MatMul (qkv, fc1, fc2).
    /// </summary>
    [Test]
    public void CorrectedLayersHaveZeroMeanErrorOnCalibrationRows()
    {
        const int samples = 64;
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var fp32 = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var recipe = Recipes.Get("liu2021");
        recipe = WithoutCheck(recipe) with { Passes = WithoutCheck(recipe).Passes.TakeWhile(p => p.Name != "measure-error").ToList() }; // stop before emission
        var result = Quantizer.Quantize(model, "vit", new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { Recipe = "liu2021", Bits = BitWidths.Parse("W4A4"), CalibrationSamples = samples }, recipe);
        var layers = result.Plan.QuantizedNodes.Select(n => WeightedLinear.Of(n, result.Plan)).OfType<WeightedLinear>().ToList();
        Assert.That(layers, Has.Count.EqualTo(25));
        var inputs = layers.Select(l => l.Activation.Value.Name).Distinct().ToDictionary(n => n, n => new AllRows());
        using (var capture = new ActivationCapture(fp32, inputs.Keys, "vit", onlyTheseTensors: true))
            capture.Run(new NpyTensorSource(Repo.Calibration, null), inputs.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<IObserver>)[kv.Value]), 16, samples);
        int layersWithCorrections = 0;
        foreach (var layer in layers)
        {
            var x = inputs[layer.Activation.Value.Name];
            var rows = x.Values.Count / layer.K;
            Assert.That(rows % samples, Is.Zero, $"{layer.Node.Name}: every calibration sample's rows");
            var xs = x.Values.ToArray();
            var xq = (float[])xs.Clone();
            layer.Activation.Parameters!.Simulate(xq, [rows, layer.K]);
            var y = layer.Multiply(xs, rows, layer.W);
            var yq = layer.Multiply(xq, rows, layer.Simulated(layer.Weight.Parameters!));
            var (original, corrected) = Biases(layer.Node, layer.N);
            double residual = 0, shift = 0, shiftLeft = 0;
            for (int j = 0; j < layer.N; j++)
            {
                double sum = 0;
                for (int r = 0; r < rows; r++) sum += (double)yq[r * layer.N + j] - y[r * layer.N + j];
                double before = sum / rows; // E[Q(X)Q(W) − XW] over every calibration row
                float applied = original[j] - corrected[j];
                if (applied != 0) residual = Math.Max(residual, Math.Abs(before - applied)); // corrected channels: no mean error left
                else shiftLeft = Math.Max(shiftLeft, Math.Abs(before));
                shift = Math.Max(shift, Math.Abs(before));
            }
            Assert.That(shift, Is.GreaterThan(1e-3), $"{layer.Node.Name}: W4A4 shifts the output mean");
            Assert.That(residual, Is.LessThan(1e-4 * Math.Max(1, shift)), layer.Node.Name);
            if (shiftLeft < shift) layersWithCorrections++; // the largest shift was significant and corrected
        }
        Assert.That(layersWithCorrections, Is.GreaterThanOrEqualTo(20), "most layers have a significant mean shift at W4A4");
    }

    /// <summary>Every element of a tensor over the batches (the test's calibration set is small).</summary>
    private sealed class AllRows : IObserver
    {
        public List<float> Values { get; } = [];

        public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
        {
            foreach (var v in data) Values.Add(v);
        }
    }

    [Test]
    public void AMatMulWithoutBiasGetsAnAdd()
    {
        // x[N,1,4,8] · W[8,6] → y[N,1,4,6], a graph output with no bias (calibration wants an image-shaped input).
        var g = new Graph("matmul");
        var x = g.AddInput("x", new TensorTypeInfo(DataType.Float, [Dim.Named("batch"), Dim.Known(1), Dim.Known(4), Dim.Known(8)]));
        var w = g.AddInitializer("w", Tensor.FromFloats([8, 6], TinyModels.Random(48, 1)));
        var y = g.AddNode("MatMul", [x, w], ["y"], name: "linear").Output();
        y.Type = new TensorTypeInfo(DataType.Float, [Dim.Named("batch"), Dim.Known(1), Dim.Known(4), Dim.Known(6)]);
        g.AddOutput(y);
        var model = TinyModels.NewModel(g);
        using var tmp = new TempDir();
        string npy = tmp.File("x.npy");
        NpyFile.Write(npy, TinyModels.Random(32 * 4 * 8, 7).Select(v => v + 0.3f).ToArray().AsSpan(), 32, 1, 4, 8);
        var recipe = WithoutCheck(Recipes.Get("liu2021"));
        Quantizer.Quantize(model, "tiny", new NpyTensorSource(npy, null), new QuantizationOptions { Bits = BitWidths.Parse("W4A4") }, recipe);
        var add = model.Graph.Nodes.Single(n => n.OpType == "Add");
        Assert.That(add.Inputs.Any(i => i is not null && Constants.TryGetTensor(i, out _)), "a constant bias");
        Assert.That(model.Graph.Outputs.Single().Name, Is.EqualTo("y"), "the output keeps its name");
        Assert.That(add.Output().IsGraphOutput && add.Output().Name == "y", "the corrected value is the output");
        var outputs = Ort.Run(Ort.Bytes(model), "x", TinyModels.Random(2 * 4 * 8, 9), [2, 1, 4, 8]);
        Assert.That(outputs[0], Has.Length.EqualTo(2 * 4 * 6), "the corrected model runs in ONNX Runtime");
    }

    /// <summary>
    /// With the model-level check (liu2021's default) the corrections are all applied or none:
    /// the diagnostic says which, the graph agrees, and the check's verdict is one of the
    /// quantized model run by ONNX Runtime against the FP32 one.
    /// </summary>
    [Test]
    public void TheModelLevelCheckAppliesAllCorrectionsOrNone()
    {
        foreach (var bits in new[] { "W4A4", "W8A8" })
        {
            var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
            var result = Quantizer.Quantize(model, "vit", new NpyTensorSource(Repo.Calibration, null),
                new QuantizationOptions { Recipe = "liu2021", Bits = BitWidths.Parse(bits), CalibrationSamples = 128 });
            var verdict = result.Diagnostics.Single(d => d.Pass == "correct-bias" && (d.Message.Contains("not applied") || d.Message.Contains("checked on")));
            Assert.That(verdict.Message, Does.Contain("128 calibration samples"));
            int corrected = model.Graph.Initializers.Count(v => v.Name.Contains("_bias_corrected"));
            if (verdict.Message.Contains("not applied")) Assert.That(corrected, Is.Zero, $"{bits}: {verdict.Message}");
            else Assert.That(corrected, Is.GreaterThan(20), $"{bits}: {verdict.Message}");
        }
    }

    [Test]
    public void AnImprovementIsASignificantKlGainThatKeepsEveryTop1()
    {
        Assert.That(new PlanCheck.Verdict(256, Without: 0.05, With: 0.04, StandardError: 0.004, AgreeingWithout: 240, AgreeingWith: 240).Improves, Is.True);
        Assert.That(new PlanCheck.Verdict(256, Without: 0.05, With: 0.04, StandardError: 0.004, AgreeingWithout: 240, AgreeingWith: 239).Improves, Is.False, "one more sample changed class");
        Assert.That(new PlanCheck.Verdict(256, Without: 0.05, With: 0.045, StandardError: 0.004, AgreeingWithout: 240, AgreeingWith: 241).Improves, Is.False, "1.25 standard errors");
        Assert.That(new PlanCheck.Verdict(256, Without: 0.05, With: 0.06, StandardError: 0.001, AgreeingWithout: 240, AgreeingWith: 240).Improves, Is.False);
    }

    private static Recipe WithoutCheck(Recipe recipe) => recipe with
    {
        Passes = recipe.Passes.Select(p => p.Name == "correct-bias" ? p with { Options = new Dictionary<string, string> { ["check"] = "false" } } : p).ToList(),
    };

    /// <summary>(bias before correction, bias now) of a layer, read from the graph.</summary>
    private static (float[] Original, float[] Corrected) Biases(Node node, int n)
    {
        Value bias = node.OpType == "Gemm" ? node.Input(2)! : node.Output().Consumers.Single().Node.Inputs.First(i => i is not null && Constants.TryGetTensor(i, out _))!;
        Assert.That(Constants.TryGetTensor(bias, out var t));
        var corrected = t.ToFloats();
        var original = bias.Meta.TryGetValue("onnxvitq.original-bias", out var o) ? (float[])o : corrected;
        Assert.That(corrected, Has.Length.EqualTo(n));
        return (original, corrected);
    }
}
