using OnnxViTQ.Data;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

/// <summary>
/// Recipes without outlier handling say when post-LayerNorm channel ranges will make them
/// collapse (minmax at W4A4 on the outlier variants falls to chance, BENCHMARKS.md); recipes that
/// handle outliers, and models without them, get no warning.
/// </summary>
public class OutlierWarningTests
{
    private static IReadOnlyList<string> Warnings(string file, string recipe, string bits)
    {
        var model = OnnxModelReader.Load(Repo.Model(file));
        var result = Quantizer.Quantize(model, file, new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { Recipe = recipe, Bits = BitWidths.Parse(bits), CalibrationSamples = 128 });
        return result.Diagnostics.Where(d => d.Level == DiagnosticLevel.Warning && d.Pass == "warn-outlier-channels").Select(d => d.Message).ToList();
    }

    [Test]
    public void MinmaxOnOutlierChannelsIsWarned()
    {
        var warnings = Warnings("vit-outliers.opset17.onnx", "minmax", "W4A4");
        Assert.That(warnings, Has.Count.EqualTo(1));
        Assert.That(warnings[0], Does.Contain("post-LayerNorm").And.Contain("× the median channel's range").And.Contain("at 4 bits").And.Contain("repq, dopq, aocq"));
    }

    [TestCase("vit-outliers.opset17.onnx", "repq", "W4A4")]
    [TestCase("vit-outliers.opset17.onnx", "adfq", "W4A4")]
    [TestCase("vit.opset17.onnx", "minmax", "W4A4")]
    [TestCase("swin.opset17.onnx", "minmax", "W4A4")]
    public void NoWarningWhereNothingWillCollapse(string file, string recipe, string bits) =>
        Assert.That(Warnings(file, recipe, bits), Is.Empty);
}
