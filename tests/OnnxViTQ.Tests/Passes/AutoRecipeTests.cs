using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Passes;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

/// <summary><c>--recipe auto</c>: candidates scored without labels on held-out calibration samples.</summary>
public class AutoRecipeTests
{
    [TestCase(512, 512, 384, 128)]
    [TestCase(2000, 512, 512, 1488)]
    [TestCase(3000, 512, 512, 2048)]
    [TestCase(600, 512, 450, 150)]
    [TestCase(100, 512, 75, 25)]
    [TestCase(2, 512, 1, 1)]
    public void HoldsOutSamplesAfterTheCalibrationOnes(int available, int requested, int calibration, int heldOut) =>
        Assert.That(AutoRecipe.Split(available, requested), Is.EqualTo((calibration, heldOut)));

    [Test]
    public void SkippingSamplesReadsTheLaterOnesInOrder()
    {
        var source = new NpyTensorSource(Repo.Calibration, null);
        var all = source.ReadBatches(32, 100).SelectMany(b => b.Data).ToArray();
        int sample = source.SampleShape.Aggregate(1, (a, d) => a * d);
        var later = source.Skip(37).Take(50);
        Assert.That(later.Count, Is.EqualTo(50));
        var batches = later.ReadBatches(16).ToList();
        Assert.That(batches.Select(b => b.Count), Is.EqualTo(new[] { 16, 16, 16, 2 }));
        Assert.That(batches.SelectMany(b => b.Data).ToArray(), Is.EqualTo(all.AsSpan(37 * sample, 50 * sample).ToArray()));
    }

    [Test]
    public void WithoutAFoldReadsTheSamplesAroundItInOrder()
    {
        var source = new NpyTensorSource(Repo.Calibration, null);
        var all = source.ReadBatches(64, 200).SelectMany(b => b.Data).ToArray();
        int sample = source.SampleShape.Aggregate(1, (a, d) => a * d);
        var rest = source.Take(200).Without(50, 30);
        Assert.That(rest.Count, Is.EqualTo(170));
        var batches = rest.ReadBatches(64).ToList();
        Assert.That(batches.Select(b => b.Count), Is.EqualTo(new[] { 64, 64, 42 }), "a batch spans the gap");
        var expected = all.AsSpan(0, 50 * sample).ToArray().Concat(all.AsSpan(80 * sample, 120 * sample).ToArray());
        Assert.That(batches.SelectMany(b => b.Data).ToArray(), Is.EqualTo(expected.ToArray()));
        Assert.That(rest.ReadBatches(16, 40).Sum(b => b.Count), Is.EqualTo(40), "only samples before the gap are read when only they are wanted");
    }

    [Test]
    public void ConcatenatedSourcesReadOneAfterTheOther()
    {
        var first = new NpyTensorSource(Repo.Calibration, null).Take(10);
        var images = new NpyTensorSource(Repo.EvalImages, ImagePreprocessing.ForModel(OnnxModelReader.Load(Repo.Model("vit.opset17.onnx")), 3, 28, 28));
        var both = first.Concat(images.Take(7));
        Assert.That(both.Count, Is.EqualTo(17));
        var batches = both.ReadBatches(4).ToList();
        Assert.That(batches.Select(b => b.Count), Is.EqualTo(new[] { 4, 4, 4, 4, 1 }));
        var expected = first.ReadBatches(10).SelectMany(b => b.Data).Concat(images.ReadBatches(7, 7).SelectMany(b => b.Data)).ToArray();
        Assert.That(batches.SelectMany(b => b.Data).ToArray(), Is.EqualTo(expected));
        Assert.That(both.ReadBatches(4, 6).Sum(b => b.Count), Is.EqualTo(6));
        var wrongShape = new NpyTensorSource(Repo.EvalImages, ImagePreprocessing.ForModel(OnnxModelReader.Load(Repo.Model("vit.opset17.onnx")), 3, 32, 32));
        Assert.That(Assert.Throws<OnnxViTQException>(() => first.Concat(wrongShape))!.Message, Does.Contain("cannot be one data set"));
    }

    /// <summary>Mean KL to FP32 ranks first (on held-out images it picked closer to the labelled best than
    /// agreement did: BENCHMARKS.md "Which label-free score picks the recipe"); agreement breaks ties; failed candidates are not ranked.</summary>
    [Test]
    public void RanksByKlThenAgreement()
    {
        AutoScore[] scores =
        [
            new("repq", 0.045, 0.930, 1, null), new("dopq", 0.040, 0.940, 1, null), new("adfq", 0.040, 0.950, 1, null),
            new("aocq", null, null, 1, "failed: no"),
        ];
        Assert.That(AutoRecipe.Rank(scores).Select(s => s.Recipe), Is.EqualTo(new[] { "adfq", "dopq", "repq" }));
    }

    /// <summary>The lead is a paired difference of per-sample KL with its standard error.</summary>
    [Test]
    public void LeadIsThePairedKlDifferenceWithItsStandardError()
    {
        // Four samples: the runner-up's KL is higher by 0.1, 0.2, 0.3, 0.4 (mean 0.25).
        var best = new Fidelity([0.1, 0.1, 0.1, 0.1], [true, true, true, true]);
        var next = new Fidelity([0.2, 0.3, 0.4, 0.5], [true, true, true, false]);
        var lead = AutoLead.Of("next", best, next);
        Assert.That(lead.KlDifference, Is.EqualTo(0.25).Within(1e-12));
        // Sample standard deviation of (0.1, 0.2, 0.3, 0.4) over √4.
        Assert.That(lead.StandardError, Is.EqualTo(Math.Sqrt(0.05 / 3) / 2).Within(1e-12));
        Assert.That(lead.WithinNoise, Is.False, "0.25 is 3.9 standard errors");
        Assert.That(lead.ToString(), Is.EqualTo("mean KL 0.25 below next's (standard error 0.0645)"));
    }

    /// <summary>On a model with outlier channels at W4A4, minmax collapses and repq does not: auto
    /// sees it on the held-out samples (no labels) and keeps repq, whose accuracy the labels confirm.</summary>
    [Test]
    public void KeepsTheRecipeClosestToFp32OnHeldOutSamples()
    {
        var path = Repo.Model("vit-outliers.opset17.onnx");
        var model = OnnxModelReader.Load(path);
        var result = Quantizer.Quantize(model, path, new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { Recipe = "auto", Bits = BitWidths.Parse("W4A4"), AutoRecipes = ["minmax", "repq"] });

        var auto = result.Auto!;
        Assert.That((auto.Recipe, result.Recipe.Name, auto.CalibrationSamples, auto.HeldOutSamples), Is.EqualTo(("repq", "repq", 384, 128)));
        Assert.That(auto.Scores.Select(s => s.Recipe), Is.EqualTo(new[] { "minmax", "repq" }));
        var (minmax, repq) = (auto.Scores[0], auto.Scores[1]);
        Assert.That(repq.MeanKl, Is.LessThan(minmax.MeanKl!.Value / 10), "minmax collapses on the outlier channels at 4 bits");
        Assert.That(repq.Agreement, Is.GreaterThan(0.9));

        var saved = OnnxModelReader.Parse(OnnxModelWriter.ToBytes(model));
        var labels = NpyFile.Open(Repo.EvalLabels).ReadAllInt64();
        var predictions = ClassificationEvaluator.Predict(saved, path, new NpyTensorSource(Repo.EvalImages, ImagePreprocessing.ForModel(saved, 3, 28, 28)));
        Assert.That(ClassificationEvaluator.Score(predictions, labels).Top1, Is.GreaterThan(0.83), "the chosen recipe's model, on labelled images");
    }

    [Test]
    public void ABudgetSkipsTheRecipesLeftAndSaysSo()
    {
        var path = Repo.Model("vit.opset17.onnx");
        var result = Quantizer.Quantize(OnnxModelReader.Load(path), path, new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { Recipe = "auto", AutoRecipes = ["minmax", "percentile", "repq"], AutoSeconds = 0.01, CalibrationSamples = 64 });
        Assert.That(result.Auto!.Recipe, Is.EqualTo("minmax"));
        Assert.That(result.Auto.Scores.Skip(1).Select(s => s.Note), Is.All.EqualTo("not tried: the 0 s budget was spent"));
        Assert.That(Assert.Throws<OnnxViTQException>(() => Quantizer.Quantize(OnnxModelReader.Load(path), path, new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { Recipe = "auto", AutoRecipes = ["minmax", "nope"] }))!.Message, Does.StartWith("unknown recipe 'nope'"));
    }
}
