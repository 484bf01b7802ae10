using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Passes.Canonicalize;
using OnnxViTQ.Passes.Reparameterize;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.EndToEnd;

/// <summary>
/// The CNN-transformer hybrid (<c>models/exports/hybrid.opset17.onnx</c>, <c>zoo.py train hybrid</c>):
/// a hard-swish stem, three inverted-residual blocks (ReLU in the first, hard-swish after), a 1×1
/// convolution to 49 tokens, two transformer blocks, a head. Its convolutional part gets roles and
/// modules of its own, equalization where the activation allows it, per-channel depthwise inputs
/// and bias correction; it quantizes end to end like the ViTs.
/// </summary>
public class HybridTests
{
    private static string Hybrid => Path.Combine(Repo.Models, "exports", "hybrid.opset17.onnx");

    /// <summary>PyTorch's logits for the 16 committed PNG test images (zoo.py's golden file)
    /// are what ONNX Runtime computes from the export, through our decoding and preprocessing.</summary>
    [Test]
    public void ExportMatchesPyTorchLogits()
    {
        var golden = NpyFile.Open(Path.Combine(Repo.Models, "exports", "hybrid.golden_logits.npy"));
        int n = (int)golden.Shape[0], classes = (int)golden.Shape[1];
        var expected = new float[n * classes];
        golden.ReadFloats(0, expected);
        var model = OnnxModelReader.Load(Hybrid);
        var images = new ImageFolderSource(Repo.PngFolder, ImagePreprocessing.ForModel(model, 3, 28, 28));
        var batch = images.ReadBatches(n).Single();
        var logits = Ort.RunFile(Hybrid, "pixel_values", batch.Data, [n, 3, 28, 28])[0];
        Assert.That(logits, Is.EqualTo(expected).Within(2e-4));
    }

    [Test]
    public void TheConvolutionalPartHasItsOwnRolesAndModules()
    {
        var model = OnnxModelReader.Load(Hybrid);
        var context = new PassContext();
        new PassManager([CanonicalizationRules.Pass(Hybrid), new SelectQuantizationSites(), new TagViTRoles()]).Run(model, context);
        var plan = context.Get<QuantizationPlan>();
        var activations = plan.Activations.ToList();
        Assert.That(activations.Count(s => s.Role == TensorRole.DepthwiseInput), Is.EqualTo(3));
        Assert.That(activations.Count(s => s.Role == TensorRole.ConvInput), Is.EqualTo(7));
        Assert.That(activations.Count(s => s.Role == TensorRole.Input), Is.EqualTo(1));
        Assert.That(activations.Where(s => s.Role == TensorRole.Other), Is.Empty, "every tensor recognised");
        Assert.That(activations.Count(s => s.Role == TensorRole.PostSoftmax), Is.EqualTo(2));
        var convModules = plan.Sites.Where(s => s.IsWeight && s.Uses[0].Node.OpType == "Conv").Select(s => s.Module).ToList();
        Assert.That(convModules, Is.EqualTo(Enumerable.Range(0, 11).Select(i => $"conv {i}")));
        Assert.That(plan.Sites.Select(s => s.Module), Does.Not.Contain("patch embedding"));
    }

    [Test]
    public void EqualizationKeepsTheFunctionOfTheReluBlock()
    {
        var model = OnnxModelReader.Load(Hybrid);
        var (x, shape) = Ort.CalibrationSamples(16);
        var before = Ort.Run(Ort.Bytes(model), "pixel_values", x, shape)[0];
        var context = new PassContext();
        Assert.That(new EqualizeConvPairs().Run(model, context).Modified);
        // the first block's expand → ReLU → depthwise → ReLU → project: two pairs; the last block's
        // linear projection → the 1×1 token convolution (nothing between): one; hard-swish joins none
        Assert.That(context.Diagnostics.Single().Message, Does.StartWith("equalized 3 convolution pairs"));
        var after = Ort.Run(Ort.Bytes(model), "pixel_values", x, shape)[0];
        float scale = before.Max(MathF.Abs);
        Assert.That(after.Zip(before, (a, b) => MathF.Abs(a - b)).Max(), Is.LessThan(1e-4f * scale));
    }

    [TestCase("minmax")]
    [TestCase("repq")]
    public void QuantizeW8A8KeepsAccuracyWithinHalfAPoint(string recipe)
    {
        using var dir = new TempDir();
        string output = dir.File("q.onnx");
        var summary = OnnxQuantizer.QuantizeFile(Hybrid, Repo.Calibration, output,
            new QuantizationOptions { Recipe = recipe, Bits = BitWidths.Parse("W8A8"), CalibrationSamples = 256 });
        Assert.That(summary.Result!.Plan.Sites.Where(s => s.Role == TensorRole.DepthwiseInput).Select(s => s.Parameters!.Granularity), Is.All.EqualTo(Granularity.PerChannel));
        double fp32 = OnnxQuantizer.EvaluateAccuracy(Hybrid, Repo.EvalImages, Repo.EvalLabels).Top1;
        double quantized = OnnxQuantizer.EvaluateAccuracy(output, Repo.EvalImages, Repo.EvalLabels).Top1;
        Assert.That(100 * (fp32 - quantized), Is.LessThanOrEqualTo(0.5), $"{recipe}: FP32 {fp32:P2}, W8A8 {quantized:P2}");
    }
}
