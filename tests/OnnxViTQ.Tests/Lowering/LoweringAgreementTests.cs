using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Lowering;

/// <summary>A lowered model computes the plan its portable model writes: same options, same
/// (deterministic) plan, logits compared on the evaluation subset.</summary>
public class LoweringAgreementTests
{
    internal static LogitAgreement Compare(string file, string recipe, string bits, OutputFormat format, int samples = 500)
    {
        var eval = new NpyTensorSource(Repo.EvalImages, ImagePreprocessing.ForModel(OnnxModelReader.Load(Repo.Model(file)), 3, 28, 28));
        var subset = new LimitedSource(eval, samples);
        float[][] Run(OutputFormat f)
        {
            var model = OnnxModelReader.Load(Repo.Model(file));
            var options = new QuantizationOptions { Recipe = recipe, Bits = BitWidths.Parse(bits), CalibrationSamples = 256, Format = f };
            Quantizer.Quantize(model, file, new NpyTensorSource(Repo.Calibration, null), options);
            var saved = OnnxModelReader.Parse(OnnxModelWriter.ToBytes(model));
            return ClassificationEvaluator.Logits(saved, file, subset);
        }
        var result = LogitAgreement.Compare(Run(OutputFormat.Portable), Run(format));
        TestContext.Out.WriteLine($"{file} {recipe} {bits} {format}: {result}");
        return result;
    }

    /// <summary>Static activation quantizers: the integer kernel computes the portable model's
    /// arithmetic up to float summation order, so logits agree closely.</summary>
    [TestCase("vit.opset17.onnx", "minmax", "W8A8")]
    [TestCase("deit.opset13.onnx", "minmax", "W4A8")]
    [TestCase("swin.opset17.onnx", "repq", "W8A8")]
    public void NativeMatchesPortable(string file, string recipe, string bits)
    {
        if (NativeOps.Unavailable is { } why) Assert.Ignore(why);
        var r = Compare(file, recipe, bits, OutputFormat.Native);
        Assert.That(r.Top1Agreement, Is.GreaterThanOrEqualTo(0.995));
        Assert.That(r.MeanCosine, Is.GreaterThan(0.9999));
    }

    /// <summary>Per-token activations (adfq): the same plan, but a 1e-6 difference in a linear
    /// output moves a later static Q/K code by one step now and then, and the log2 softmax and
    /// shift-log2 quantizers downstream amplify it; measured agreement is 97 % on this 6-layer
    /// model (BENCHMARKS.md), so the bound here is what was measured, not the 99.5 %.</summary>
    [TestCase("vit.opset17.onnx", "adfq", "W8A8")]
    public void NativePerTokenStaysCloseToPortable(string file, string recipe, string bits)
    {
        if (NativeOps.Unavailable is { } why) Assert.Ignore(why);
        var r = Compare(file, recipe, bits, OutputFormat.Native);
        Assert.That(r.Top1Agreement, Is.GreaterThanOrEqualTo(0.95));
        Assert.That(r.MeanCosine, Is.GreaterThan(0.99));
    }
}
