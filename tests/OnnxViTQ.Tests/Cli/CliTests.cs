using OnnxViTQ.Cli;
using OnnxViTQ.Data;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Cli;

public class CliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => Support.Cli.Run(args);

    private static string Vit => Repo.Model("vit.opset17.onnx");

    /// <summary>A bad input: exit code 2, one line on stderr naming the problem, no stack trace,
    /// and nothing written next to the output (no output file, no temporary).</summary>
    private static void AssertCleanFailure((int Code, string Out, string Err) r, TempDir outDir, params string[] mentions)
    {
        Assert.That(r.Code, Is.EqualTo(ExitCodes.BadInput), r.Err);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), r.Err);
        Assert.That(lines[0], Does.StartWith("error: "));
        foreach (var m in mentions) Assert.That(lines[0], Does.Contain(m));
        Assert.That(r.Err, Does.Not.Contain("   at "));
        Assert.That(Directory.EnumerateFiles(outDir.Path, "*.onnx*", SearchOption.AllDirectories), Is.Empty, "no output left behind");
        Assert.That(Directory.EnumerateFiles(outDir.Path, "*.tmp", SearchOption.AllDirectories), Is.Empty, "no temporary left behind");
    }

    [Test]
    public void MissingModelFile()
    {
        using var tmp = new TempDir();
        var r = Run("quantize", tmp.File("nope.onnx"), "-o", tmp.File("out.onnx"), "--calib", Repo.Calibration);
        AssertCleanFailure(r, tmp, "nope.onnx", "does not exist");
    }

    [Test]
    public void TruncatedModelFile()
    {
        using var tmp = new TempDir();
        var bytes = File.ReadAllBytes(Vit);
        File.WriteAllBytes(tmp.File("cut.model"), bytes[..(bytes.Length / 2)]);
        var r = Run("quantize", tmp.File("cut.model"), "-o", tmp.File("out.onnx"), "--calib", Repo.Calibration);
        AssertCleanFailure(r, tmp, "cut.model", "not a valid ONNX model");
    }

    [TestCase("hello, this is not a model\n")]
    [TestCase("")]
    public void NonOnnxFile(string content)
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("notes.txt"), content);
        var r = Run("quantize", tmp.File("notes.txt"), "-o", tmp.File("out.onnx"), "--calib", Repo.Calibration);
        AssertCleanFailure(r, tmp, "notes.txt", "not");
    }

    [Test]
    public void CalibrationShapeDoesNotFitTheModel()
    {
        using var tmp = new TempDir();
        string data = tmp.File("gray.npy");
        NpyFile.Write(data, new float[8 * 28 * 28].AsSpan(), 8, 1, 28, 28);
        var r = Run("quantize", Vit, "-o", tmp.File("out.onnx"), "--calib", data);
        AssertCleanFailure(r, tmp, "gray.npy", "[1,28,28]", "pixel_values", "[3,28,28]");
    }

    [Test]
    public void EmptyCalibrationFolder()
    {
        using var tmp = new TempDir();
        Directory.CreateDirectory(tmp.File("empty"));
        var r = Run("quantize", Vit, "-o", tmp.File("out.onnx"), "--calib", tmp.File("empty"));
        AssertCleanFailure(r, tmp, "empty", "contains no images");
    }

    [Test]
    public void OutputEqualToInputIsRefusedAndTheInputIsUntouched()
    {
        using var tmp = new TempDir();
        File.Copy(Vit, tmp.File("model.onnx"));
        var before = File.ReadAllBytes(tmp.File("model.onnx"));
        var r = Run("quantize", tmp.File("model.onnx"), "-o", Path.Combine(tmp.Path, ".", "model.onnx"), "--calib", Repo.Calibration);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(r.Err.Trim(), Does.StartWith("error: ").And.Contain("is the input model"));
        Assert.That(File.ReadAllBytes(tmp.File("model.onnx")), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(tmp.Path), Has.Length.EqualTo(1));
    }

    [Test]
    public void AFailedRunKeepsAnExistingOutputUnchanged()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("out.onnx"), "previous result");
        var r = Run("quantize", Vit, "-o", tmp.File("out.onnx"), "--calib", tmp.File("missing.npy"));
        Assert.That(r.Code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(r.Err, Does.Contain("missing.npy"));
        Assert.That(File.ReadAllText(tmp.File("out.onnx")), Is.EqualTo("previous result"));
        Assert.That(Directory.GetFiles(tmp.Path), Has.Length.EqualTo(1));
    }

    [Test]
    public void BadOptionValuesAreExplained()
    {
        using var tmp = new TempDir();
        var bits = Run("quantize", Vit, "-o", tmp.File("o.onnx"), "--calib", Repo.Calibration, "--bits", "W9A8");
        Assert.That((bits.Code, bits.Err.Trim()), Is.EqualTo((ExitCodes.BadInput, "error: bit widths 'W9A8': weights and activations must each be 2 to 8 bits")));
        var recipe = Run("quantize", Vit, "-o", tmp.File("o.onnx"), "--calib", Repo.Calibration, "--recipe", "magic");
        Assert.That((recipe.Code, recipe.Err.Trim()), Is.EqualTo((ExitCodes.BadInput, $"error: unknown recipe 'magic'; available: {string.Join(", ", Recipes.Names)}, auto (or a recipe file ending in .json)")));
        Assert.That(File.Exists(tmp.File("o.onnx")), Is.False);
        var labels = Run("eval", Vit, "--data", Repo.EvalImages, "--labels", Repo.Calibration);
        Assert.That((labels.Code, labels.Err), Is.EqualTo((ExitCodes.BadInput, $"error: '{Repo.Calibration}' holds Float32 values; integer labels were expected{Environment.NewLine}")));
    }

    [Test]
    public void InspectListsInterfaceOpsAndQuantizableNodes()
    {
        var r = Run("inspect", Vit);
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(r.Out, Does.Contain("pixel_values").And.Contain("float32[batch,3,28,28]").And.Contain("logits"));
        Assert.That(r.Out, Does.Contain("LayerNormalization"));
        Assert.That(r.Out, Does.Contain("attention 0").And.Contain("mlp 5").And.Contain("head").And.Contain("patch embedding"));
        foreach (var role in new[] { "post-layernorm", "post-gelu", "post-softmax", "query", "key", "value", "attention-output", "weight" })
            Assert.That(r.Out, Does.Contain(role));
        Assert.That(r.Out, Does.Contain("38 of 38 MatMul/Gemm/Conv nodes would be quantized; roles: 26 weight, 13 post-layernorm, 6 post-gelu, 6 post-softmax, 6 query, 6 key, 6 value, 6 attention-output, 1 input"));
    }

    [Test]
    public void QuantizeFromPngFolderThenEvalAgainstFp32()
    {
        using var tmp = new TempDir();
        string output = tmp.File("sub/vit.w8a8.onnx");
        var q = Run("quantize", Vit, "-o", output, "--calib", Repo.PngFolder, "--report", tmp.File("report.json"));
        Assert.That(q.Code, Is.Zero, q.Err);
        using (var report = System.Text.Json.JsonDocument.Parse(File.ReadAllText(tmp.File("report.json"))))
        {
            var sites = report.RootElement.GetProperty("sites").EnumerateArray().ToList();
            Assert.That(sites, Has.Count.EqualTo(26 + 50));
            var weight = sites.First(t => t.GetProperty("role").GetString() == "weight");
            Assert.That(weight.GetProperty("bits").GetInt32(), Is.EqualTo(8));
            Assert.That(weight.GetProperty("granularity").GetString(), Is.EqualTo("per-channel"));
            Assert.That(weight.GetProperty("parameters").GetProperty("scales").GetArrayLength(), Is.GreaterThan(1), "per channel");
            Assert.That(weight.GetProperty("sqnr_db").GetDouble(), Is.GreaterThan(30), "8-bit weights are measured");
            var ln = sites.First(t => t.GetProperty("role").GetString() == "post-layernorm");
            Assert.That(ln.GetProperty("module").GetString(), Is.EqualTo("attention 0"));
            Assert.That(report.RootElement.GetProperty("calibration_samples").GetInt64(), Is.EqualTo(16));
            var layers = report.RootElement.GetProperty("layers").EnumerateArray().ToList();
            Assert.That(layers, Has.Count.EqualTo(25), "every linear layer's output error");
            Assert.That(layers.Select(l => l.GetProperty("output_sqnr_db").GetDouble()), Has.All.GreaterThan(10));
            Assert.That(layers.Select(l => l.GetProperty("output_cosine").GetDouble()), Has.All.GreaterThan(0.97));
        }
        Assert.That(q.Out, Does.Contain("38 of 38 MatMul/Gemm/Conv (26 with weights, 12 activation × activation)"));
        Assert.That(q.Out, Does.Contain("16 samples"));
        Assert.That(OnnxModelReader.Load(output).GetMetadata("onnxvitq.quantization"), Is.EqualTo("recipe=minmax;bits=W8A8"));

        var e = Run("eval", output, "--data", Repo.EvalImages, "--labels", Repo.EvalLabels, "--ref", Vit, "--limit", "300");
        Assert.That(e.Code, Is.Zero, e.Err);
        Assert.That(e.Out, Does.Contain("Evaluated 300 samples").And.Contain("agreement"));
    }

    [Test]
    public void ExternalDataOutputIsEvaluatedAsSaved()
    {
        using var tmp = new TempDir();
        string output = tmp.File("deit.q.onnx");
        var q = Run("quantize", Repo.Model("deit.opset13.onnx"), "-o", output, "--calib", Repo.Calibration, "--samples", "64", "--external-data", "Always");
        Assert.That(q.Code, Is.Zero, q.Err);
        Assert.That(ExternalDataFiles.Of(output), Has.Count.EqualTo(1), "one weights file beside the model");

        var e = Run("eval", output, "--data", Repo.EvalImages, "--labels", Repo.EvalLabels, "--limit", "200");
        Assert.That(e.Code, Is.Zero, e.Err);
        Assert.That(e.Out, Does.Contain("Evaluated 200 samples"));
    }

    [Test]
    public void DefaultRunQuantizesTheBundledModelAndReportsAccuracy()
    {
        using var tmp = new TempDir();
        var r = Run("quantize", "-o", tmp.File("default.onnx"), "--samples", "128");
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(r.Out, Does.Contain("vit.opset17.onnx").And.Contain("top-1").And.Contain("drop (pt)"));
        Assert.That(File.Exists(tmp.File("default.onnx")));
    }

    /// <summary>bench times the model and its reference in the same rounds: every requested batch
    /// for both, positive medians inside their p10–p90 band, the reference's ratio exactly 1, and
    /// the JSON (written whole) says the same as the table.</summary>
    [Test]
    public void BenchTimesAModelAgainstItsReference()
    {
        using var tmp = new TempDir();
        var deit = Repo.Model("deit.opset17.onnx");
        var r = Run("bench", Vit, "--ref", deit, "--batch-size", "1,2", "--rounds", "3", "--warmup", "1", "--threads", "1", "--json", tmp.File("bench.json"));
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(r.Out, Does.Contain("median ms").And.Contain("vs ref").And.Contain("intra-op thread").And.Contain("native kernel path"));
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(tmp.File("bench.json")));
        var results = json.RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.That(results.Select(x => (x.GetProperty("model").GetString(), x.GetProperty("batch").GetInt32())),
            Is.EquivalentTo(new[] { (Vit, 1), (deit, 1), (Vit, 2), (deit, 2) }));
        foreach (var x in results)
        {
            double median = x.GetProperty("median_ms").GetDouble();
            Assert.That(median, Is.GreaterThan(0));
            Assert.That(median, Is.InRange(x.GetProperty("p10_ms").GetDouble(), x.GetProperty("p90_ms").GetDouble()));
            Assert.That(x.GetProperty("images_per_second").GetDouble(), Is.EqualTo(1000 * x.GetProperty("batch").GetInt32() / median).Within(0.01 * 1000 * x.GetProperty("batch").GetInt32() / median));
            if (x.GetProperty("model").GetString() == deit) Assert.That(x.GetProperty("speed_up_vs_ref").GetDouble(), Is.EqualTo(1));
        }
        Assert.That(Directory.EnumerateFiles(tmp.Path, "*.tmp"), Is.Empty);
    }

    [TestCase("0,8", "'0' is not a positive integer")]
    [TestCase("1,x", "'x' is not a positive integer")]
    public void BenchRejectsBadBatchSizes(string batches, string message)
    {
        var r = Run("bench", Vit, "--batch-size", batches);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(r.Err, Does.StartWith("error: --batch-size").And.Contain(message));
    }

    [Test]
    public void BenchFailsCleanlyBeforeTiming()
    {
        using var tmp = new TempDir();
        var missing = Run("bench", tmp.File("nope.onnx"));
        AssertCleanFailure(missing, tmp, "nope.onnx", "does not exist");
        var folder = Run("bench", Vit, "--json", Path.Combine(tmp.Path, "no", "such", "bench.json"), "--rounds", "100000");
        AssertCleanFailure(folder, tmp, "--json", "does not exist");
    }

    [Test]
    public void HelpDescribesTheCommands()
    {
        var r = Run("--help");
        Assert.That(r.Code, Is.Zero);
        Assert.That(r.Out, Does.Contain("quantize").And.Contain("eval").And.Contain("inspect").And.Contain("bench"));
        var q = Run("quantize", "--help");
        Assert.That(q.Out, Does.Contain("--calib").And.Contain("--recipe").And.Contain("--bits").And.Contain("W8A8"));
    }

    [Test]
    public void OutliersWritesTheFunctionPreservingVariant()
    {
        using var tmp = new TempDir();
        string output = tmp.File("vit-outliers.onnx");
        var r = Run("outliers", Vit, "-o", output);
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(r.Out, Does.Contain("/encoder/layers/encoder_layer_0/ln_1/LayerNormalization").And.Contain("(×"));
        Assert.That(File.ReadAllBytes(output), Is.EqualTo(File.ReadAllBytes(Repo.Model("vit-outliers.opset17.onnx"))), "the committed variant");
        var same = Run("outliers", Vit, "-o", Vit);
        Assert.That((same.Code, same.Err.Trim()), Is.EqualTo((ExitCodes.BadInput, $"error: output '{Vit}' is the input model; choose another -o")));
        var bad = Run("outliers", Vit, "-o", tmp.File("x.onnx"), "--min-factor", "0.5");
        Assert.That(bad.Err.Trim(), Is.EqualTo("error: --min-factor 0.5 must be above 1"));
        Assert.That(File.Exists(tmp.File("x.onnx")), Is.False);
    }

    [Test]
    public void ARecipeFileDrivesQuantizeAndTheReportRecordsEverySite()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("mine.json"), """
            { "extends": "adfq", "description": "adfq with 8-bit heads",
              "overrides": { "/heads/head/Gemm": { "kind": "uniform", "bits": 8 } } }
            """);
        var q = Run("quantize", Repo.Model("vit-outliers.opset17.onnx"), "-o", tmp.File("q.onnx"), "--calib", Repo.Calibration, "--samples", "64",
            "--bits", "W4A4", "--recipe", tmp.File("mine.json"), "--report", tmp.File("r.json"));
        Assert.That(q.Code, Is.Zero, q.Err);
        Assert.That(q.Out, Does.Contain("mine: adfq with 8-bit heads"));
        Assert.That(q.Out, Does.Contain("post-layernorm").And.Contain("outlier-split 4-bit per-token").And.Contain("% outliers on average"));
        using var report = System.Text.Json.JsonDocument.Parse(File.ReadAllText(tmp.File("r.json")));
        var root = report.RootElement;
        Assert.That(root.GetProperty("recipe").GetString(), Is.EqualTo("mine"));
        var sites = root.GetProperty("sites").EnumerateArray().ToList();
        foreach (var site in sites)
        {
            Assert.That(site.GetProperty("quantizer").GetString(), Is.Not.EqualTo("none"));
            Assert.That(site.TryGetProperty("sqnr_db", out _) || site.GetProperty("role").GetString() == "input", site.ToString());
        }
        var ln = sites.First(s => s.GetProperty("role").GetString() == "post-layernorm" && s.GetProperty("module").GetString() == "attention 0");
        Assert.That(ln.GetProperty("quantizer").GetString(), Is.EqualTo("outlier-split"));
        Assert.That(ln.GetProperty("parameters").GetProperty("outlier_ratio").GetDouble(), Is.GreaterThan(0).And.LessThan(0.05));
        var head = sites.Where(s => s.GetProperty("consumers").EnumerateArray().Any(c => c.GetString() == "/heads/head/Gemm")).ToList();
        Assert.That(head.Select(s => s.GetProperty("bits").GetInt32()), Is.All.EqualTo(8));
        Assert.That(root.GetProperty("sites_by_role").GetProperty("post-softmax").GetInt32(), Is.EqualTo(6));
    }

    [Test]
    public void ABrokenRecipeFileIsACleanFailure()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("bad.json"), """{ "extends": "adfq", "quantizers": { "post-softmax": { "kind": "log2", "bits": 1 } } }""");
        var r = Run("quantize", Vit, "-o", tmp.File("q.onnx"), "--calib", Repo.Calibration, "--recipe", tmp.File("bad.json"));
        AssertCleanFailure(r, tmp, "bad.json", "quantizers.post-softmax", "2 to 8 bits, not 1");
        File.WriteAllText(tmp.File("bad.json"), "{ not json");
        r = Run("quantize", Vit, "-o", tmp.File("q.onnx"), "--calib", Repo.Calibration, "--recipe", tmp.File("bad.json"));
        AssertCleanFailure(r, tmp, "bad.json", "is not valid JSON");
    }
}
