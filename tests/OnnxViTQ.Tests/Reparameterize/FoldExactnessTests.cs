using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Passes.Analysis;
using OnnxViTQ.Passes.Canonicalize;
using OnnxViTQ.Passes.Reparameterize;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Reparameterize;

/// <summary>Every reparameterization is an exact FP32 rewrite: the folded model computes what the
/// original computed (within 1e-5 relative to the output's scale) on real calibration images.</summary>
public class FoldExactnessTests
{
    public static IEnumerable<TestCaseData> Cases() =>
        from file in Repo.AllModels
        from policy in new[] { "repq", "mosf", "balance" }
        select new TestCaseData(file, policy);

    private static IFoldPolicy Policy(string name) => name switch { "mosf" => new MosfPolicy(), "balance" => new BalancePolicy(), _ => new RepQPolicy() };

    /// <summary>The recipe's passes up to and including the fold, at W4A4 (the policies'
    /// decisions depend on the bit widths; exactness must not).</summary>
    private static (Model Model, PassContext Context) Folded(string file, string policy)
    {
        var model = OnnxModelReader.Load(Repo.Model(file));
        var context = new PassContext();
        new PassManager(
        [
            new RewriteRulesPass("canonicalize", CanonicalizationRules.All), new SelectQuantizationSites(), new TagViTRoles(),
            new AssignQuantizers(new QuantizerTable(), BitWidths.Parse("W4A4"), "test"),
            new CollectActivationStatistics(new NpyTensorSource(Repo.Calibration, null), 32, 64, file),
            new FoldLayerNormScales(Policy(policy), file),
        ]).Run(model, context);
        return (model, context);
    }

    [TestCaseSource(nameof(Cases))]
    public void TheFoldedFp32ModelComputesTheSameLogits(string file, string policy)
    {
        var (samples, shape) = Ort.CalibrationSamples(16);
        var before = Ort.RunFile(Repo.Model(file), "pixel_values", samples, shape)[0];
        var (model, context) = Folded(file, policy);
        var after = Ort.Run(Ort.Bytes(model), "pixel_values", samples, shape)[0];
        double scale = before.Max(v => Math.Abs(v));
        double worst = before.Zip(after, (a, b) => Math.Abs(a - b)).Max();
        Assert.That(worst / scale, Is.LessThan(1e-5), $"max |Δ| = {worst:g3}, logits up to {scale:g3}");
        var plan = context.Get<QuantizationPlan>();
        int folded = plan.Sites.Count(s => s.Notes.Any(n => n.StartsWith($"{policy}: folded")));
        Assert.That(folded, Is.GreaterThanOrEqualTo(13), "every block's qkv and fc1 inputs, and the heads");
        Assert.That(context.Diagnostics.Select(d => d.Message), Has.Some.Match($"^{policy}: reparameterized \\d+ LayerNorms$"));
    }

    [Test]
    public void RepQsPerTensorQuantizerReproducesThePerChannelQuantization()
    {
        // y'/s̃ + z̃ = y/s_c + z_c per channel: quantizing the folded activation per tensor equals
        // quantizing the original per channel (asymmetric, min/max of each channel).
        var (model, context) = Folded("vit-outliers.opset17.onnx", "repq");
        var original = OnnxModelReader.Load(Repo.Model("vit-outliers.opset17.onnx"));
        var plan = context.Get<QuantizationPlan>();
        var site = plan.Sites.First(s => s.Role == TensorRole.PostLayerNorm && s.Notes.Any(n => n.StartsWith("repq")));
        var q = (UniformQuantizer)site.Parameters!;
        Assert.That((q.Granularity, q.Bits), Is.EqualTo((Granularity.PerTensor, 4)));
        var (samples, shape) = Ort.CalibrationSamples(4);
        var folded = Ort.RunWithShapes(Ort.Bytes(model, [site.Value]), "pixel_values", samples, shape, [site.Name])[0];
        var raw = Ort.RunWithShapes(Ort.Bytes(original, [original.Graph.Lookup(site.Name)!]), "pixel_values", samples, shape, [site.Name])[0];
        int channels = (int)raw.Shape[^1];
        // the per-channel ranges the fold used: the calibration statistics mapped back
        var stats = new PerChannelMinMaxObserver();
        var (calib, calibShape) = Ort.CalibrationSamples(64);
        stats.Observe(Ort.RunWithShapes(Ort.Bytes(original, [original.Graph.Lookup(site.Name)!]), "pixel_values", calib, calibShape, [site.Name])[0].Data, raw.Shape);
        var simulated = (float[])folded.Data.Clone();
        q.Simulate(simulated, folded.Shape);
        int mismatched = 0;
        for (int i = 0; i < raw.Data.Length; i++)
        {
            int c = i % channels;
            float s = Math.Max((stats.Max[c] - stats.Min[c]) / 15, 1e-8f), z = MathF.Round(-stats.Min[c] / s, MidpointRounding.ToEven);
            float perChannelCode = Math.Clamp(MathF.Round(raw.Data[i] / s, MidpointRounding.ToEven) + z, 0, 15);
            float perTensorCode = MathF.Round(simulated[i] / q.Scales[0], MidpointRounding.ToEven) + q.ZeroPoints[0];
            if (Math.Abs(perTensorCode - perChannelCode) > 0.5f) mismatched++;
        }
        Assert.That(mismatched, Is.LessThanOrEqualTo(raw.Data.Length / 1000), "the same integer codes (up to float rounding at ties)");
    }

    [Test]
    public void ALayerNormFeedingAResidualIsRefusedWithTheReason()
    {
        var model = OnnxModelReader.Load(Repo.Model("swin.opset17.onnx"));
        var groups = LayerNormGroups.Find(model, "swin");
        var embedding = groups.Single(g => g.Name.Contains("features.0.2"));
        Assert.That(embedding.Refusal, Does.StartWith("the LayerNorm output reaches LayerNormalization"), "the patch-embedding norm feeds the first block's norm and residual");
        Assert.That(groups.Count(g => g.Foldable), Is.EqualTo(groups.Count - 1));
        Assert.That(groups.Count(g => g.ZeroPadded), Is.EqualTo(2), "stage 3 pads its 4×4 tokens to the 7×7 window before partitioning");
        Assert.Throws<InvalidOperationException>(() => ChannelAffineFold.Apply(model, embedding, new float[embedding.Channels], new float[embedding.Channels]));
    }

    [Test]
    public void EveryLinearReadingTheLayerNormIsRewritten()
    {
        var deit = LayerNormGroups.Find(OnnxModelReader.Load(Repo.Model("deit.opset13.onnx")), "deit");
        var final = deit.Last();
        Assert.That(final.Linears.Select(l => l.Node.Name), Is.EquivalentTo(new[] { "/heads/head/Gemm", "/head_dist/Gemm" }), "class and distillation heads");
        var swin = LayerNormGroups.Find(OnnxModelReader.Load(Repo.Model("swin.opset13.onnx")), "swin");
        Assert.That(swin.Last().Linears.Single().Node.Name, Is.EqualTo("/head/Gemm"), "through the transpose, spatial average and flatten");
        Assert.That(swin.Single(g => g.Name.Contains("features.2/norm")).Linears.Single().Node.Name, Does.Contain("reduction"));
    }

    [Test]
    public void ShiftsAreRefusedWhereTheLayerNormOutputIsZeroPadded()
    {
        var model = OnnxModelReader.Load(Repo.Model("swin.opset17.onnx"));
        var padded = LayerNormGroups.Find(model, "swin").First(g => g.ZeroPadded);
        var shift = new float[padded.Channels];
        shift[0] = 1f;
        var e = Assert.Throws<InvalidOperationException>(() => ChannelAffineFold.Apply(model, padded, Enumerable.Repeat(1f, padded.Channels).ToArray(), shift))!;
        Assert.That(e.Message, Does.Contain("zero-padded"));
    }
}
