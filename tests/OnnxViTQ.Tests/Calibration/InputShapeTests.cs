using Google.Protobuf;
using Onnx;
using OnnxViTQ.Cli;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Calibration;

/// <summary>Exports with a dynamic height or width (as paddle2onnx and OCR exports declare them):
/// <c>--input-shape</c>, or float32 [N,C,H,W] calibration data, gives the sizes; the written model
/// keeps its dynamic dimensions; checks that need no calibration run before it.</summary>
public class InputShapeTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => Support.Cli.Run(args);

    /// <summary>vit.opset17.onnx with its width declared dynamic ("width"), as exporters write it.</summary>
    private static string DynamicWidthExport(TempDir tmp)
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Repo.Model("vit.opset17.onnx")));
        proto.Graph.Input[0].Type.TensorType.Shape.Dim[3] = new TensorShapeProto.Types.Dimension { DimParam = "width" };
        string path = tmp.File("dynamic-width.onnx");
        File.WriteAllBytes(path, proto.ToByteArray());
        return path;
    }

    [TestCase("pixel_values:1x3x48x320", "pixel_values", new long[] { 1, 3, 48, 320 })]
    [TestCase("8x3x224x224", null, new long[] { 8, 3, 224, 224 })]
    [TestCase("ns:input:1x1x32x100", "ns:input", new long[] { 1, 1, 32, 100 })]
    public void ParsesNameAndSizes(string text, string? name, long[] dims)
    {
        var shape = InputShape.Parse(text);
        Assert.That((shape.Name, shape.Dims), Is.EqualTo((name, dims)));
        Assert.That(shape.ToString(), Is.EqualTo(text));
    }

    [TestCase("x:1x3x48", "has 3 sizes")]
    [TestCase("x:1x3x0x320", "'0' is not a size from 1 to 1048576")]
    [TestCase("x:1x3xhx320", "'h' is not a size")]
    public void RefusesMalformedShapes(string text, string message) =>
        Assert.That(Assert.Throws<OnnxViTQException>(() => InputShape.Parse(text))!.Message, Does.Contain(message));

    [Test]
    public void ADynamicWidthQuantizesWithTheShapeGivenAndStaysDynamic()
    {
        using var tmp = new TempDir();
        string model = DynamicWidthExport(tmp), output = tmp.File("q.onnx");

        // uint8 images cannot say the width: a clean error naming the option, before calibration.
        var images = Run("quantize", model, "-o", output, "--calib", Repo.EvalImages, "--samples", "32");
        Assert.That(images.Code, Is.EqualTo(ExitCodes.BadInput), images.Err);
        Assert.That(images.Err, Does.Contain("input 'pixel_values' has shape [batch,3,28,width]; give its size with --input-shape pixel_values:1x3x28x224"));
        Assert.That(images.Out, Does.Not.Contain("calibrating"));
        Assert.That(File.Exists(output), Is.False);

        var given = Run("quantize", model, "-o", output, "--calib", Repo.EvalImages, "--samples", "32", "--input-shape", "pixel_values:1x3x28x28",
            "--eval-data", Repo.EvalImages, "--eval-labels", Repo.EvalLabels);
        Assert.That(given.Code, Is.Zero, given.Err);
        Assert.That(given.Out, Does.Match(@"agreement 9\d\.\d\d %"));
        var written = OnnxModelReader.Load(output).Graph.Inputs[0].Type!.Shape!;
        Assert.That(written.Select(d => d.ToString()), Is.EqualTo(new[] { "batch", "3", "28", "width" }), "the output keeps the dynamic dimensions");

        var eval = Run("eval", output, "--data", Repo.EvalImages, "--labels", Repo.EvalLabels, "--limit", "64", "--input-shape", "1x3x28x28", "--ref", model);
        Assert.That(eval.Code, Is.Zero, eval.Err);

        // float32 [N,C,H,W] calibration data gives the size itself.
        var fromData = Run("quantize", model, "-o", tmp.File("q2.onnx"), "--calib", Repo.Calibration, "--samples", "32");
        Assert.That(fromData.Code, Is.Zero, fromData.Err);
    }

    [Test]
    public void AShapeThatContradictsAFixedDimensionIsRefused()
    {
        using var tmp = new TempDir();
        var r = Run("quantize", Repo.Model("vit.opset17.onnx"), "-o", tmp.File("q.onnx"), "--calib", Repo.Calibration, "--input-shape", "pixel_values:1x3x32x28");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(r.Err, Does.Contain("input 'pixel_values' has a fixed height of 28, but --input-shape pixel_values:1x3x32x28 gives 32"));
        var wrongName = Run("quantize", Repo.Model("vit.opset17.onnx"), "-o", tmp.File("q.onnx"), "--calib", Repo.Calibration, "--input-shape", "image:1x3x28x28");
        Assert.That(wrongName.Err, Does.Contain("--input-shape names input 'image', but"));
    }

    /// <summary>An old-opset model used to calibrate for the full time and only then be refused by
    /// the emitter; now canonicalize converts opsets 7–12 first, and refuses older ones, before calibration.</summary>
    [Test]
    public void AnOpsetBelow7IsRefusedBeforeCalibration()
    {
        using var tmp = new TempDir();
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Repo.Model("vit.opset13.onnx")));
        proto.OpsetImport.Single(o => o.Domain is "" or "ai.onnx").Version = 6;
        File.WriteAllBytes(tmp.File("old.onnx"), proto.ToByteArray());
        var r = Run("quantize", tmp.File("old.onnx"), "-o", tmp.File("q.onnx"), "--calib", Repo.Calibration);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(r.Err, Does.Contain("imports ONNX opset 6; opsets older than 7 are not supported"));
        Assert.That(r.Out, Does.Not.Contain("calibrating"));
        Assert.That(File.Exists(tmp.File("q.onnx")), Is.False);
    }
}
