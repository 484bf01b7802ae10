using OnnxViTQ.Data;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Search;

public class SearchIntervalsTests
{
    [Test]
    public void SearchAndCorrectionRaiseTheMeanLayerSqnr()
    {
        var model = OnnxModelReader.Load(Repo.Model("deit.opset17.onnx"));
        var result = Quantizer.Quantize(model, "deit", new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { Recipe = "liu2021", Bits = BitWidths.Parse("W4A4"), CalibrationSamples = 128, MeasureLayerOutputs = true });
        Assert.That(result.LayerErrorsBefore, Has.Count.EqualTo(result.LayerErrors.Count).And.Count.GreaterThan(20));
        double before = result.LayerErrorsBefore.Average(l => l.Error.SqnrDb), after = result.LayerErrors.Average(l => l.Error.SqnrDb);
        Assert.That(after, Is.GreaterThan(before + 0.2), $"mean layer SQNR {before:0.00} → {after:0.00} dB");
        Assert.That(result.Plan.Sites.Count(s => s.Notes.Any(n => n.StartsWith("interval search"))), Is.GreaterThan(10), "steps were re-chosen");
    }

    [Test]
    public void SearchComposesWithOtherRecipesThroughARecipeFile()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("repq-search.json"), """
            {
              "extends": "repq",
              "passes": ["canonicalize", "select-sites", "tag-roles", "assign-quantizers", "collect-statistics",
                         {"name": "fold-layernorm", "policy": "repq"}, "fit-quantizers", "search-intervals", "correct-bias",
                         "measure-error", "emit-portable", "remove-unused-constants"]
            }
            """);
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var result = Quantizer.Quantize(model, "vit", new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { Recipe = tmp.File("repq-search.json"), Bits = BitWidths.Parse("W6A6"), CalibrationSamples = 64 });
        Assert.That(result.Timings.Select(t => t.Pass), Does.Contain("search-intervals").And.Contain("correct-bias").And.Contain("fold-layernorm-repq").Or.Contain("fold-layernorm"));
        Assert.That(result.Plan.Sites.Any(s => s.Notes.Any(n => n.StartsWith("interval search"))));
        var logits = ClassifyTwo(model);
        Assert.That(logits.All(float.IsFinite), "the emitted model runs");
    }

    private static float[] ClassifyTwo(OnnxViTQ.Ir.Model model) =>
        Ort.Run(Ort.Bytes(model), "pixel_values", TinyModels.Random(2 * 3 * 28 * 28, 5), [2, 3, 28, 28])[0];
}
