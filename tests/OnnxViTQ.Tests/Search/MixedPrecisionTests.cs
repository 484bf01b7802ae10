using System.Text.Json;
using OnnxViTQ.Cli;
using OnnxViTQ.Data;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Search;

public class MixedPrecisionTests
{
    [Test]
    public void ModulesShareOneWidthUnderTheAverage()
    {
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var result = Quantizer.Quantize(model, "vit", new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { Recipe = "liu2021", CalibrationSamples = 64, MixedPrecision = new MixedPrecision(4, 8, 5.5) });
        var choices = result.ModuleBits!;
        Assert.That(choices.Modules.Select(m => m.Module), Is.EquivalentTo(Enumerable.Range(0, 6).SelectMany(i => new[] { $"attention {i}", $"mlp {i}" })));
        Assert.That(choices.AverageBits, Is.LessThanOrEqualTo(5.5));
        Assert.That(choices.Modules.Select(m => m.Bits), Has.All.InRange(4, 8));
        foreach (var module in choices.Modules)
        {
            var bits = result.Plan.Sites.Where(s => s.Module == module.Module).Select(s => s.Parameters!.Bits).Distinct().ToList();
            Assert.That(bits, Is.EqualTo(new[] { module.Bits }), $"every weight and activation of {module.Module}");
            Assert.That(module.Sensitivity.Keys, Is.EquivalentTo(new[] { 4, 5, 6, 7, 8 }));
            Assert.That(module.Sensitivity[4], Is.GreaterThan(module.Sensitivity[8]), "fewer bits, more sensitivity");
        }
        var others = result.Plan.Sites.Where(s => !s.Module.StartsWith("attention ") && !s.Module.StartsWith("mlp "));
        Assert.That(others.Select(s => s.Parameters!.Bits), Has.All.EqualTo(8), "patch embedding, head and image keep --bits");
    }

    [Test]
    public void CommandLineAndReport()
    {
        using var tmp = new TempDir();
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliApp.Run(["quantize", Repo.Model("vit.opset17.onnx"), "-o", tmp.File("q.onnx"), "--calib", Repo.Calibration, "--samples", "32",
            "--recipe", "liu2021", "--bits", "mixed:4-8", "--avg-bits", "6", "--report", tmp.File("r.json"), "--html", tmp.File("r.html")], stdout, stderr);
        Assert.That(code, Is.Zero, stderr.ToString());
        Assert.That(stdout.ToString(), Does.Contain("mixed 4-8 bits, average 6").And.Contain("mixed precision"));
        using var report = JsonDocument.Parse(File.ReadAllText(tmp.File("r.json")));
        var mixed = report.RootElement.GetProperty("mixed_precision");
        Assert.That(mixed.GetProperty("modules").GetArrayLength(), Is.EqualTo(12));
        Assert.That(mixed.GetProperty("average_bits").GetDouble(), Is.LessThanOrEqualTo(6));
        var layer = report.RootElement.GetProperty("layers")[0];
        Assert.That(layer.TryGetProperty("output_sqnr_db_before", out _), "before/after search and correction");
        string html = File.ReadAllText(tmp.File("r.html"));
        Assert.That(html, Does.Contain("SQNR before (dB)").And.Contain("sensitivity at 4").And.Contain("Mixed precision: one width per module"));
    }

    [TestCase(new[] { "--bits", "mixed:4-8" }, "--bits mixed:<min>-<max> needs --avg-bits")]
    [TestCase(new[] { "--avg-bits", "6" }, "--avg-bits goes with --bits mixed")]
    [TestCase(new[] { "--bits", "mixed:4-9", "--avg-bits", "6" }, "the range must lie in 2..8")]
    [TestCase(new[] { "--bits", "mixed:4-8", "--avg-bits", "3" }, "--avg-bits 3 must lie in 4..8")]
    public void BadMixedOptionsAreRefused(string[] options, string message)
    {
        using var tmp = new TempDir();
        var stderr = new StringWriter();
        int code = CliApp.Run(["quantize", Repo.Model("vit.opset17.onnx"), "-o", tmp.File("q.onnx"), "--calib", Repo.Calibration, .. options], new StringWriter(), stderr);
        Assert.That(code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(stderr.ToString(), Does.Contain(message));
        Assert.That(File.Exists(tmp.File("q.onnx")), Is.False);
    }
}
