using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Reconstruction;

/// <summary>The <c>reconstruct</c> pass in a recipe: module-wise AdaRound on a real model, measured on labelled images.</summary>
public class ReconstructTests
{
    private static Recipe WithReconstruct(string recipe, int iterations)
    {
        var r = Recipes.Get(recipe);
        int fit = r.Passes.ToList().FindIndex(p => p.Name == "fit-quantizers");
        return r with
        {
            Name = $"{recipe}+reconstruct",
            Passes = [.. r.Passes.Take(fit + 1), new PassStep("reconstruct", new Dictionary<string, string> { ["iterations"] = $"{iterations}", ["samples"] = "256" }), .. r.Passes.Skip(fit + 1)],
        };
    }

    private static (double Top1, QuantizationResult Result) Quantize(string file, Recipe recipe, string bits)
    {
        var path = Repo.Model(file);
        var model = OnnxModelReader.Load(path);
        var result = Quantizer.Quantize(model, path, new NpyTensorSource(Repo.Calibration, null), new QuantizationOptions { Bits = BitWidths.Parse(bits) }, recipe);
        var saved = OnnxModelReader.Parse(OnnxModelWriter.ToBytes(model));
        var labels = NpyFile.Open(Repo.EvalLabels).ReadAllInt64();
        var predictions = ClassificationEvaluator.Predict(saved, path, new NpyTensorSource(Repo.EvalImages, ImagePreprocessing.ForModel(saved, 3, 28, 28)));
        return (ClassificationEvaluator.Score(predictions, labels).Top1, result);
    }

    [TestCase("vit.opset17.onnx", "minmax", "W3A8")]
    public void ReconstructionRecoversAccuracyLostToWeightRounding(string file, string recipe, string bits)
    {
        var (plain, _) = Quantize(file, Recipes.Get(recipe), bits);
        var (reconstructed, result) = Quantize(file, WithReconstruct(recipe, 300), bits);
        TestContext.Out.WriteLine($"{file} {recipe} {bits}: top-1 {plain:P2} → {reconstructed:P2} with reconstruction");
        foreach (var d in result.Diagnostics.Where(d => d.Pass == "reconstruct")) TestContext.Out.WriteLine(d.Message);
        var optimized = result.Plan.Weights.Count(w => w.Notes.Any(n => n.StartsWith("AdaRound:", StringComparison.Ordinal)));
        Assert.That(optimized, Is.EqualTo(result.Plan.Weights.Count(w => w.Module.StartsWith("attention ") || w.Module.StartsWith("mlp "))), "every attention and MLP weight");
        Assert.That(reconstructed, Is.GreaterThan(plain));
    }
}
