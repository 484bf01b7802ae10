using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

/// <summary><c>--recipe auto</c>: candidates scored without labels on held-out calibration samples.</summary>
public class AutoRecipeTests
{
    [TestCase(512, 512, 384, 128)]
    [TestCase(2000, 512, 512, 128)]
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
