using OnnxViTQ.Cli;
using OnnxViTQ.Data;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Cli;

/// <summary>The image-bytes model from the command line: <c>preprocess</c> of an FP32 model,
/// <c>quantize --embed-preprocessing</c> with its accuracy on a PNG folder, and <c>eval</c> of such
/// a model against the tensor-input original, which agree on every bundled PNG.</summary>
public class ImageBytesCliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => Support.Cli.Run(args);

    [Test]
    public void PreprocessThenEvalAgainstTheTensorModel()
    {
        using var tmp = new TempDir();
        var vit = Repo.Model("vit.opset17.onnx");
        var pre = Run("preprocess", vit, "-o", tmp.File("vit.bytes.onnx"));
        Assert.That(pre.Code, Is.EqualTo(ExitCodes.Ok), pre.Err);
        Assert.That(pre.Out, Does.Contain("input 'image_bytes' (uint8 encoded image)"));
        Assert.That(EmbeddedPreprocessing.TakesImageBytes(OnnxModelReader.Load(tmp.File("vit.bytes.onnx"))));

        var eval = Run("eval", tmp.File("vit.bytes.onnx"), "--data", Repo.PngFolder, "--labels", Repo.EvalLabels, "--ref", vit);
        Assert.That(eval.Code, Is.EqualTo(ExitCodes.Ok), eval.Err);
        Assert.That(eval.Out, Does.Contain("Evaluated 16 images").And.Contain("(encoded images)").And.Contain("100.00 %"), "agreement with the tensor model on every PNG");

        var npy = Run("eval", tmp.File("vit.bytes.onnx"), "--data", Repo.EvalImages, "--labels", Repo.EvalLabels);
        Assert.That((npy.Code, npy.Err.Trim()), Is.EqualTo((ExitCodes.BadInput,
            $"error: '{tmp.File("vit.bytes.onnx")}' takes encoded images; evaluate it on a folder of PNG/JPEG/BMP files, not '{Repo.EvalImages}'")));
    }

    [Test]
    public void QuantizeEmbedsThePreprocessingAndMeasuresAccuracyOnImages()
    {
        using var tmp = new TempDir();
        var r = Run("quantize", Repo.Model("vit.opset17.onnx"), "-o", tmp.File("q.onnx"), "--calib", Repo.Calibration, "--samples", "32",
            "--embed-preprocessing", "--eval-data", Repo.PngFolder, "--eval-labels", Repo.EvalLabels);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Err);
        Assert.That(r.Out, Does.Contain("on 16 samples"));
        Assert.That(EmbeddedPreprocessing.TakesImageBytes(OnnxModelReader.Load(tmp.File("q.onnx"))));

        var npy = Run("quantize", Repo.Model("vit.opset17.onnx"), "-o", tmp.File("q2.onnx"), "--calib", Repo.Calibration,
            "--embed-preprocessing", "--eval-data", Repo.EvalImages, "--eval-labels", Repo.EvalLabels);
        Assert.That(npy.Code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(npy.Err, Does.Contain("--eval-data must be a folder of PNG/JPEG images"));
        Assert.That(File.Exists(tmp.File("q2.onnx")), Is.False);
    }
}
