using OnnxViTQ.Passes.Canonicalize;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.EndToEnd;

/// <summary>
/// The reference models at the opsets other exporters write (models/exports, models/README.md):
/// PyTorch 1.13's own exports at opset 9 and 11 (<c>tools/zoo/zoo.py reexport</c>: the committed
/// weights, re-exported) and our adapters' opset-18 and opset-20 forms (<c>onnxvitq convert</c>:
/// ReduceMean axes as inputs, the Gelu operator). Quantize converts each into the compiler's range
/// by itself; converted, each computes the opset-17 original's logits, and W8A8 keeps its accuracy.
/// </summary>
public class OpsetExportsTests
{
    public static readonly object[] Exports =
    [
        new object[] { "vit.opset9.onnx", "vit", 9L },
        new object[] { "deit.opset11.onnx", "deit", 11L },
        new object[] { "swin.opset11.onnx", "swin", 11L },
        new object[] { "vit.opset18.onnx", "vit", 18L },
        new object[] { "swin.opset20.onnx", "swin", 20L },
    ];

    private static string Export(string file) => Path.Combine(Repo.Models, "exports", file);

    [TestCaseSource(nameof(Exports))]
    public void ConvertedTheyComputeTheOriginalsLogits(string file, string family, long opset)
    {
        var model = OnnxModelReader.Load(Export(file));
        Assert.That(model.DefaultOpset, Is.EqualTo(opset));
        var summary = OpsetConversion.ToCompilerRange(model, file, values => Canonicalize.ProbeShapes(model, values, file));
        Assert.That(model.DefaultOpset, Is.EqualTo(opset < 13 ? 13 : 17), summary.ToString());

        var (x, shape) = Ort.CalibrationSamples(16);
        var original = Ort.RunFile(Repo.Model($"{family}.opset17.onnx"), "pixel_values", x, shape)[0];
        var converted = Ort.Run(Ort.Bytes(model), "pixel_values", x, shape)[0];
        float scale = original.Max(MathF.Abs);
        Assert.That(converted.Zip(original, (a, b) => MathF.Abs(a - b)).Max(), Is.LessThan(1e-4f * scale), summary.ToString());
    }

    [Test]
    public void TheOldExportsNeedTheirAdapters()
    {
        // What makes these files different: attributes that became inputs, Dropout, and (at 18/20)
        // ReduceMean axes inputs and Gelu.
        static OpsetConversionSummary Convert(string file)
        {
            var m = OnnxModelReader.Load(Export(file));
            return OpsetConversion.ToCompilerRange(m, file, values => Canonicalize.ProbeShapes(m, values, file));
        }
        Assert.That(Convert("vit.opset9.onnx").Adapted.Keys, Is.SupersetOf(new[] { "Split", "Unsqueeze" }));
        Assert.That(Convert("swin.opset11.onnx").Adapted.Keys, Is.SupersetOf(new[] { "Dropout", "Unsqueeze" }));
        Assert.That(Convert("vit.opset18.onnx").Adapted.Keys, Does.Contain("ReduceMean"));
        Assert.That(Convert("swin.opset20.onnx").Adapted.Keys, Does.Contain("Gelu"));
    }

    [TestCase("vit.opset18.onnx", "vit.opset13.onnx", 18, false)]
    [TestCase("swin.opset20.onnx", "swin.opset17.onnx", 20, true)]
    public void TheCommittedNewOpsetFilesAreWhatConvertWrites(string file, string from, int opset, bool fuseGelu)
    {
        using var dir = new TempDir();
        string output = Path.Combine(dir.Path, file);
        var args = new List<string> { "convert", Repo.Model(from), "-o", output, "--opset", opset.ToString() };
        if (fuseGelu) args.Add("--fuse-gelu");
        var run = Support.Cli.Run([.. args]);
        Assert.That(run.Code, Is.Zero, run.Err);
        Assert.That(File.ReadAllBytes(output), Is.EqualTo(File.ReadAllBytes(Export(file))), "regenerate with the command in models/README.md");
    }

    [TestCase("vit.opset9.onnx", "minmax")]
    [TestCase("vit.opset9.onnx", "repq")]
    [TestCase("deit.opset11.onnx", "minmax")]
    [TestCase("swin.opset11.onnx", "minmax")]
    [TestCase("vit.opset18.onnx", "minmax")]
    [TestCase("swin.opset20.onnx", "dopq")]
    public void QuantizeW8A8KeepsAccuracyWithinHalfAPoint(string file, string recipe)
    {
        using var dir = new TempDir();
        string output = Path.Combine(dir.Path, "q.onnx");
        var summary = OnnxQuantizer.QuantizeFile(Export(file), Repo.Calibration, output,
            new QuantizationOptions { Recipe = recipe, Bits = BitWidths.Parse("W8A8"), CalibrationSamples = 256 });
        Assert.That(summary.QuantizedNodes, Is.GreaterThan(30));
        var written = OnnxModelReader.Load(output);
        Assert.That(written.DefaultOpset, Is.InRange(13L, 17L));
        double fp32 = OnnxQuantizer.EvaluateAccuracy(Export(file), Repo.EvalImages, Repo.EvalLabels).Top1;
        double quantized = OnnxQuantizer.EvaluateAccuracy(output, Repo.EvalImages, Repo.EvalLabels).Top1;
        Assert.That(100 * (fp32 - quantized), Is.LessThanOrEqualTo(0.5), $"{file} {recipe}: FP32 {fp32:P2}, W8A8 {quantized:P2}");
    }

    /// <summary>vit.opset18 with a Resize the compiler's opsets cannot express (antialias, opset 18) on its input.</summary>
    private static void WriteAntialiasModel(string path)
    {
        var model = OnnxModelReader.Load(Export("vit.opset18.onnx"));
        var g = model.Graph;
        var input = g.Inputs.Single(v => !v.IsInitializer);
        var scales = g.AddInitializer("resize_scales", OnnxViTQ.Ir.Tensor.FromFloats([4], [1f, 1f, 1f, 1f]));
        var resize = g.AddNode("Resize", [input, null, scales], ["resized"], [OnnxViTQ.Ir.AttributeValue.String("mode", "linear"), OnnxViTQ.Ir.AttributeValue.Int("antialias", 1)],
            name: "antialias_resize", before: g.Nodes[0]);
        foreach (var use in input.Consumers.Where(u => u.Node != resize).ToList()) use.Node.SetInput(use.InputIndex, resize.Output());
        OnnxModelWriter.Save(model, path);
    }

    [Test]
    public void AnUnconvertibleNodeIsRefusedBeforeCalibration()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "antialias.onnx"), output = Path.Combine(dir.Path, "q.onnx");
        WriteAntialiasModel(path);

        var reports = new List<ProgressReport>();
        var e = Assert.Throws<OnnxViTQException>(() => OnnxQuantizer.QuantizeFile(path, Repo.Calibration, output, progress: new SyncProgress(reports.Add)))!;
        Assert.That(e.Message, Does.Contain("node 'antialias_resize' (Resize)").And.Contain("antialias"));
        Assert.That(reports, Is.Empty, "refused before any calibration batch");
        Assert.That(File.Exists(output), Is.False);
    }

    [Test]
    public void TheCliRefusesItWithTheNodeNamedAndWritesNothing()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "antialias.onnx"), output = Path.Combine(dir.Path, "converted.onnx");
        WriteAntialiasModel(path);
        foreach (var args in new[] { new[] { "convert", path, "-o", output, "--opset", "17" }, ["quantize", path, "-o", output, "--calib", Repo.Calibration] })
        {
            var run = Support.Cli.Run(args);
            Assert.That(run.Code, Is.Not.Zero, args[0]);
            Assert.That(run.Err, Does.Contain("node 'antialias_resize' (Resize)").And.Contain("from opset 18 to 17"), args[0]);
            Assert.That(File.Exists(output), Is.False, args[0]);
        }
    }

    private sealed class SyncProgress(Action<ProgressReport> report) : IProgress<ProgressReport>
    {
        public void Report(ProgressReport value) => report(value);
    }
}
