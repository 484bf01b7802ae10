using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

/// <summary><c>--max-drop</c>: modules go back to 8 bits, then to float, most sensitive first,
/// until the measured loss is within the bound.</summary>
public class AccuracyFallbackTests
{
    /// <summary>minmax at W6A6 collapses on the outlier variant; without labels, the loss is top-1
    /// disagreement with FP32 on the held-out calibration samples, and the steps bring it under 3 pt.</summary>
    [Test]
    public void ModulesFallBackUntilTheBoundHolds()
    {
        var path = Repo.Model("vit-outliers.opset17.onnx");
        var model = OnnxModelReader.Load(path);
        var calibration = new NpyTensorSource(Repo.Calibration, null);
        var result = Quantizer.Quantize(model, path, calibration,
            new QuantizationOptions { Recipe = "minmax", Bits = BitWidths.Parse("W6A6"), CalibrationSamples = 128, MaxDrop = 3 });

        var fallback = result.Fallback!;
        Assert.That(fallback.Metric, Is.EqualTo("top-1 disagreement with FP32 on 384 held-out calibration samples"));
        Assert.That(fallback.Steps[0].Loss, Is.GreaterThan(3), "the bound does not hold as the recipe quantizes");
        Assert.That(fallback.Holds && fallback.Steps[^1].Loss <= 3);
        Assert.That(fallback.Steps.Skip(1).Select(s => s.Action), Has.All.Match(@" to (8 bits|float) \(sensitivity -?\d+\.\d\d pt\)$"));
        Assert.That(fallback.Steps[1].Action, Does.Contain("to 8 bits"), "a module goes to 8 bits before float");

        // The model the caller holds is the last step's: its disagreement, measured again, is the step's.
        var heldOut = calibration.Skip(128).Take(384); // the 384 samples after the 128 calibrated on
        var fp32 = ClassificationEvaluator.Predict(OnnxModelReader.Load(path), path, heldOut);
        var quantized = ClassificationEvaluator.Predict(OnnxModelReader.Parse(OnnxModelWriter.ToBytes(model)), path, heldOut);
        Assert.That(100 * (1 - ClassificationEvaluator.Agreement(fp32, quantized)), Is.EqualTo(fallback.Steps[^1].Loss).Within(1e-9));
        var floated = fallback.Steps.Where(s => s.Action.Contains("to float")).Select(s => s.Action[..s.Action.IndexOf(" to ", StringComparison.Ordinal)]).ToHashSet();
        Assert.That(result.Plan.Excluded.Select(e => e.Pattern).ToHashSet(), Is.EquivalentTo(floated));
    }

    [Test]
    public void ABoundThatHoldsChangesNothing()
    {
        var path = Repo.Model("vit.opset17.onnx");
        var result = Quantizer.Quantize(OnnxModelReader.Load(path), path, new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { Recipe = "minmax", CalibrationSamples = 128, MaxDrop = 5 });
        Assert.That(result.Fallback!.Steps, Has.Count.EqualTo(1));
        Assert.That(result.Fallback.Holds);
        Assert.That(result.Plan.Excluded, Is.Empty);
        Assert.That(Assert.Throws<OnnxViTQException>(() => Quantizer.Quantize(OnnxModelReader.Load(path), path, new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { MaxDrop = 1, MixedPrecision = new MixedPrecision(4, 8, 6) }))!.Message, Does.Contain("does not combine with --bits mixed"));
    }
}
