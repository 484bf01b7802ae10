using Microsoft.Build.Utilities;
using OnnxViTQ.Build;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Build;

public class QuantizeRequestTests
{
    private static TaskItem Item(string spec, params (string Name, string Value)[] metadata)
    {
        var item = new TaskItem(spec);
        foreach (var (n, v) in metadata) item.SetMetadata(n, v);
        return item;
    }

    [Test]
    public void MetadataBecomesTheQuantizeCommandLine()
    {
        using var project = new TempDir();
        File.Copy(Repo.Model("vit.opset17.onnx"), project.File("vit.onnx"));
        Directory.CreateDirectory(project.File("calib"));
        File.WriteAllText(project.File("recipe.json"), "{}");
        var r = QuantizeRequest.From(Item("vit.onnx", ("Calibration", "calib/"), ("Recipe", "recipe.json"), ("Bits", "W4A8"), ("Samples", "64"),
            ("Device", "cuda:1"), ("EmbedPreprocessing", "true"), ("HtmlReport", "true"), ("KeepInFloat", "head; mlp 11;re:fc2$"),
            ("Arguments", "--mean 0.5 --std \"0.25\"")), project.Path, project.File("obj/q"));

        Assert.That(r.Output, Is.EqualTo(project.File("obj/q/vit.quantized.onnx")));
        Assert.That(r.TargetPath, Is.EqualTo("vit.quantized.onnx"));
        Assert.That(r.HtmlReport, Is.EqualTo(project.File("obj/q/vit.quantized.report.html")));
        Assert.That(r.JsonReport, Is.Null);
        Assert.That(r.Arguments, Is.EqualTo(new[]
        {
            "quantize", project.File("vit.onnx"), "-o", r.Output, "--calib", project.File("calib/"),
            "--recipe", project.File("recipe.json"), "--bits", "W4A8", "--samples", "64", "--device", "cuda:1",
            "--html", r.HtmlReport, "--embed-preprocessing", "--exclude", "head", "--exclude", "mlp 11", "--exclude", "re:fc2$", "--mean", "0.5", "--std", "0.25",
        }));
        Assert.That(r.ExtraInputs, Is.EqualTo(new[] { project.File("recipe.json") }), "a recipe file is an input of the fingerprint");
    }

    [TestCase("missing.onnx", "calib.npy", ErrorCodes.ModelNotFound, "model 'missing.onnx' does not exist")]
    [TestCase("m.onnx", "", ErrorCodes.CalibrationNotFound, "has no Calibration metadata")]
    [TestCase("m.onnx", "nope/", ErrorCodes.CalibrationNotFound, "calibration data 'nope/' of 'm.onnx' does not exist")]
    public void UnusableItemsGetTheirCode(string model, string calibration, string code, string message)
    {
        using var project = new TempDir();
        File.WriteAllText(project.File("m.onnx"), "x");
        File.WriteAllText(project.File("calib.npy"), "x");
        var e = Assert.Throws<RequestException>(() => QuantizeRequest.From(Item(model, ("Calibration", calibration)), project.Path, project.File("obj")))!;
        Assert.That(e.Code, Is.EqualTo(code));
        Assert.That(e.Message, Does.Contain(message));
        Assert.That(e.File, Does.EndWith(model));
    }

    [TestCase("OutputName", "sub/out.onnx", "must be a file name")]
    [TestCase("EvalData", "eval.npy", "has EvalData but no EvalLabels")]
    [TestCase("EmbedPreprocessing", "yes", "EmbedPreprocessing of 'm.onnx' must be true or false, not 'yes'")]
    [TestCase("Report", "m.onnx", "Report '")]
    [TestCase("HtmlReport", "calib.npy", "would overwrite an input")]
    [TestCase("Report", "obj/m.quantized.onnx", "is the quantized model's own path")]
    public void InvalidMetadataIsOvq0003(string name, string value, string message)
    {
        using var project = new TempDir();
        File.WriteAllText(project.File("m.onnx"), "x");
        File.WriteAllText(project.File("calib.npy"), "x");
        var e = Assert.Throws<RequestException>(() => QuantizeRequest.From(Item("m.onnx", ("Calibration", "calib.npy"), (name, value)), project.Path, project.File("obj")))!;
        Assert.That(e.Code, Is.EqualTo(ErrorCodes.InvalidOptions));
        Assert.That(e.Message, Does.Contain(message));
    }

    [Test]
    public void FingerprintFollowsContentsAndOptions()
    {
        using var project = new TempDir();
        File.WriteAllText(project.File("m.onnx"), "model");
        Directory.CreateDirectory(project.File("calib/a"));
        File.WriteAllText(project.File("calib/a/0.npy"), "zero");
        File.WriteAllText(project.File("calib/1.npy"), "one");
        string Fingerprint(params (string, string)[] extra) =>
            InputFingerprint.Compute(QuantizeRequest.From(Item("m.onnx", [("Calibration", "calib"), .. extra]), project.Path, project.File("obj")), project.File("no-tool"));

        string first = Fingerprint();
        Assert.That(Fingerprint(), Is.EqualTo(first), "same inputs, same fingerprint");
        File.SetLastWriteTimeUtc(project.File("calib/1.npy"), DateTime.UtcNow.AddHours(1));
        Assert.That(Fingerprint(), Is.EqualTo(first), "a touched but unchanged file does not count");
        Assert.That(Fingerprint(("Bits", "W4A4")), Is.Not.EqualTo(first), "an option");
        File.WriteAllText(project.File("calib/a/0.npy"), "zerO");
        Assert.That(Fingerprint(), Is.Not.EqualTo(first), "a nested calibration file's content");
        File.WriteAllText(project.File("calib/a/0.npy"), "zero");
        Assert.That(Fingerprint(), Is.EqualTo(first));
        File.WriteAllText(project.File("calib/2.npy"), "two");
        Assert.That(Fingerprint(), Is.Not.EqualTo(first), "an added calibration file");
    }

    /// <summary>A model with external data: editing the weights file (not the .onnx) redoes the work.</summary>
    [Test]
    public void FingerprintFollowsTheModelsExternalData()
    {
        using var project = new TempDir();
        OnnxViTQ.Serialization.OnnxModelWriter.Save(OnnxViTQ.Serialization.OnnxModelReader.Load(Repo.Model("vit.opset17.onnx")), project.File("m.onnx"),
            new OnnxViTQ.Serialization.OnnxWriteOptions { ExternalData = OnnxViTQ.ExternalDataMode.Always });
        File.WriteAllText(project.File("calib.npy"), "calib");
        string Fingerprint() => InputFingerprint.Compute(QuantizeRequest.From(Item("m.onnx", ("Calibration", "calib.npy")), project.Path, project.File("obj")), project.File("no-tool"));
        string data = OnnxViTQ.Serialization.ExternalDataFiles.Of(project.File("m.onnx")).Single();
        Assert.That(OnnxViTQ.Serialization.ExternalDataFiles.ReferencedBy(project.File("m.onnx")), Is.EqualTo(new[] { Path.GetFileName(data) }));
        string first = Fingerprint();
        var bytes = File.ReadAllBytes(data);
        bytes[^1] ^= 1;
        File.WriteAllBytes(data, bytes);
        Assert.That(Fingerprint(), Is.Not.EqualTo(first), "the weights file's content counts");
    }

    [Test]
    public void ArgumentsSplitOnSpacesOutsideQuotes() =>
        Assert.That(QuantizeRequest.SplitArguments("  --a 1 --b \"two words\"  \"\" x"), Is.EqualTo(new[] { "--a", "1", "--b", "two words", "", "x" }));
}
