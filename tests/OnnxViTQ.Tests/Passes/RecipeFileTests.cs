using System.Text.Json;
using OnnxViTQ.Data;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

public class RecipeFileTests
{
    private static Recipe Parse(string json) => RecipeFile.Parse(JsonDocument.Parse(json).RootElement, "r.json");

    private static string Error(string json) => Assert.Throws<OnnxViTQException>(() => Parse(json))!.Message;

    [Test]
    public void ExtendingARecipeReplacesOnlyWhatTheFileSays()
    {
        var r = Parse("""
            { "name": "adfq-uniform-gelu", "extends": "adfq",
              "quantizers": { "post-gelu": { "kind": "uniform", "options": { "range": "percentile", "percentile": 99.9 } },
                              "weight": { "kind": "uniform", "bits": 8 } },
              "overrides": { "/head/Gemm": { "kind": "uniform", "bits": 8 } } }
            """);
        var adfq = Recipes.Get("adfq");
        Assert.That(r.Name, Is.EqualTo("adfq-uniform-gelu"));
        Assert.That(r.Passes, Is.EqualTo(adfq.Passes));
        Assert.That(r.Quantizers.For(TensorRole.PostLayerNorm).Kind, Is.EqualTo("outlier-split"), "inherited");
        Assert.That(r.Quantizers.For(TensorRole.PostGelu), Is.EqualTo(new QuantizerChoice("uniform", null, r.Quantizers.For(TensorRole.PostGelu).Options)));
        Assert.That(r.Quantizers.For(TensorRole.PostGelu).OptionValues["percentile"], Is.EqualTo("99.9"));
        Assert.That(r.Quantizers.Weight.Bits, Is.EqualTo(8));
        Assert.That(r.Quantizers.Overrides.Keys, Is.EqualTo(new[] { "/head/Gemm" }));
    }

    /// <summary>"remove" takes passes out by name, those a format adds included.</summary>
    [Test]
    public void ARecipeFileRemovesPasses()
    {
        var r = Parse("""{ "extends": "minmax", "remove": ["fuse-native-attention", "measure-error"] }""");
        Assert.That(r.Removed, Is.EqualTo(new[] { "fuse-native-attention", "measure-error" }));
        var names = r.Steps(new QuantizationOptions { Format = OutputFormat.Native }).Select(p => p.Name).ToList();
        Assert.That(names, Does.Contain("lower-native").And.Contain("fuse-native-layernorm").And.Not.Contain("fuse-native-attention").And.Not.Contain("measure-error"));
    }

    /// <summary>A recipe file whose passes would write an unquantized model is refused before
    /// calibration, and nothing is written.</summary>
    [Test]
    public void ARecipeFileAddsPassesWhereItSays()
    {
        var r = Parse("""{ "extends": "adfq", "add": [{ "name": "reconstruct", "after": "fit-quantizers", "iterations": 50 }, { "name": "measure-error", "before": "emit-portable" }] }""");
        var names = r.Passes.Select(p => p.Name).ToList();
        int fit = names.IndexOf("fit-quantizers");
        Assert.That(r.Passes[fit + 1], Is.EqualTo(r.Passes[fit + 1] with { Name = "reconstruct" }));
        Assert.That(r.Passes[fit + 1].OptionValues, Is.EquivalentTo(new Dictionary<string, string> { ["iterations"] = "50" }));
        Assert.That(names[names.IndexOf("emit-portable") - 1], Is.EqualTo("measure-error"));
        Assert.That(r.Passes, Has.Count.EqualTo(Recipes.Get("adfq").Passes.Count + 2));
        Assert.That(r.Build(new QuantizationOptions(), new NpyTensorSource(Repo.Calibration, null), "m").Select(p => p.Name), Does.Contain("reconstruct"));
    }

    [Test]
    public void ARecipeThatNeverEmitsIsRefusedBeforeCalibration()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("r.json"), """{ "extends": "minmax", "remove": ["emit-portable"] }""");
        var e = Assert.Throws<OnnxViTQException>(() => OnnxQuantizer.QuantizeFile(Repo.Model("vit.opset17.onnx"), Repo.Calibration, dir.File("out.onnx"),
            new QuantizationOptions { Recipe = dir.File("r.json"), CalibrationSamples = 8 }))!;
        Assert.That(e.Message, Is.EqualTo("no pass produces portable-emitted (the plan's remaining quantizers written as standard ONNX): add 'emit-portable'"));
        Assert.That(File.Exists(dir.File("out.onnx")), Is.False);
    }

    [Test]
    public void APassListWithOptionsIsRead()
    {
        var r = Parse("""
            { "passes": ["canonicalize", "select-sites", "tag-roles", "assign-quantizers", "collect-statistics",
                         { "name": "fold-layernorm", "policy": "mosf", "kappa": 2.5 }, "fit-quantizers", "emit-portable"] }
            """);
        Assert.That(r.Name, Is.EqualTo("r"));
        Assert.That(r.Passes[5], Is.EqualTo(r.Passes[5] with { Name = "fold-layernorm" }));
        Assert.That(r.Passes[5].OptionValues, Is.EquivalentTo(new Dictionary<string, string> { ["policy"] = "mosf", ["kappa"] = "2.5" }));
        Assert.That(r.Build(new QuantizationOptions(), new NpyTensorSource(Repo.Calibration, null), "m").Select(p => p.Name), Does.Contain("fold-layernorm-mosf"));
    }

    [TestCase("""{ "extends": "adfq", "quantisers": {} }""", "recipe file 'r.json': unknown key 'quantisers'; keys: name, description, extends, passes, remove, add, quantizers, overrides")]
    [TestCase("""{ "extends": "adfq", "add": [{ "name": "reconstruct" }] }""", "recipe file 'r.json': add[0]: say where: \"after\" or \"before\" a pass of the list")]
    [TestCase("""{ "extends": "adfq", "add": [{ "name": "reconstruct", "after": "fit-quantizer" }] }""", "recipe file 'r.json': add[0]: no pass 'fit-quantizer' in the list (canonicalize, ")]
    [TestCase("""{ "extends": "adfq", "add": [{ "name": "reconstruct", "after": "fit-quantizers", "before": "emit-portable" }] }""", "add[0]: give \"after\" or \"before\", not both")]
    [TestCase("""{ "extends": "adfq", "add": [{ "name": "reconstruct", "after": "fit-quantizers", "iteratons": 5 }] }""", "pass 'reconstruct' has no option 'iteratons'")]
    [TestCase("""{ "name": "x" }""", "recipe file 'r.json': give 'passes' or 'extends'")]
    [TestCase("""{ "extends": "adaround" }""", "unknown recipe 'adaround'")]
    [TestCase("""{ "extends": "adfq", "quantizers": { "post-ln": { "kind": "log2" } } }""", "quantizers.post-ln: unknown role; roles: default, weight, post-layernorm")]
    [TestCase("""{ "extends": "adfq", "quantizers": { "post-softmax": { "kind": "log3" } } }""", "unknown quantizer 'log3'")]
    [TestCase("""{ "extends": "adfq", "quantizers": { "post-softmax": { "kind": "log2", "bits": 12 } } }""", "recipe file 'r.json': quantizers.post-softmax: quantizer 'log2' supports 2 to 8 bits, not 12")]
    [TestCase("""{ "extends": "adfq", "quantizers": { "weight": { "kind": "log2" } } }""", "recipe file 'r.json': quantizers.weight: quantizer 'log2' applies to activations, not weights")]
    [TestCase("""{ "extends": "adfq", "quantizers": { "post-layernorm": { "kind": "outlier-split", "options": { "max-outlier-ratio": 2 } } } }""", "option 'max-outlier-ratio' of quantizer 'outlier-split' = '2' must be in [0, 0.5]")]
    [TestCase("""{ "extends": "adfq", "quantizers": { "post-layernorm": { "type": "uniform" } } }""", "quantizers.post-layernorm: unknown key 'type' (kind, bits, options)")]
    [TestCase("""{ "passes": ["canonicalise"] }""", "unknown pass 'canonicalise'; passes: canonicalize, select-sites")]
    [TestCase("""{ "passes": [3] }""", "recipe file 'r.json': passes[0]: expected a pass name or object")]
    [TestCase("""{ "extends": "adfq", "remove": "measure-error" }""", "recipe file 'r.json': 'remove' must be an array of pass names")]
    [TestCase("""{ "extends": "adfq", "remove": ["fuse-native-attenton"] }""", "unknown pass 'fuse-native-attenton'; passes: canonicalize")]
    public void MistakesAreNamed(string json, string message) => Assert.That(Error(json), Does.Contain(message));

    [Test]
    public void OverridesNamingNothingAreRejectedBeforeCalibration()
    {
        var recipe = Parse("""{ "extends": "minmax", "overrides": { "/no/such/node": { "kind": "uniform", "bits": 8 } } }""");
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var calibration = new CountingSource(new NpyTensorSource(Repo.Calibration, null));
        var e = Assert.Throws<OnnxViTQException>(() => Quantizer.Quantize(model, "vit", calibration, new QuantizationOptions(), recipe))!;
        Assert.That(e.Message, Is.EqualTo("recipe 'r': override '/no/such/node' names no quantized tensor or node of the model (`onnxvitq inspect` lists them)"));
        Assert.That(calibration.BatchesRead, Is.Zero, "nothing was calibrated");
    }

    [Test]
    public void OverridesApplyByTensorAndByNode()
    {
        var recipe = Parse("""
            { "extends": "adfq",
              "overrides": { "/heads/head/Gemm": { "kind": "uniform", "bits": 8 },
                             "/encoder/layers/encoder_layer_0/mlp/mlp.1/Mul_1_output_0": { "kind": "uniform" } } }
            """);
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var result = Quantizer.Quantize(model, "vit", new NpyTensorSource(Repo.Calibration, null), new QuantizationOptions { Bits = BitWidths.Parse("W4A4"), CalibrationSamples = 32 }, recipe);
        var head = result.Plan.Sites.Where(s => s.Uses.Any(u => u.Node.Name == "/heads/head/Gemm")).ToList();
        Assert.That(head.Select(s => (s.Role, s.Parameters!.Kind, s.Parameters.Bits)), Is.EquivalentTo(new[] { (TensorRole.Weight, "uniform", 8), (TensorRole.PostLayerNorm, "uniform", 8) }));
        var gelu = result.Plan.Sites.Where(s => s.Role == TensorRole.PostGelu).ToList();
        Assert.That(gelu[0].Parameters!.Kind, Is.EqualTo("uniform"));
        Assert.That(gelu[0].Parameters!.Bits, Is.EqualTo(4));
        Assert.That(gelu.Skip(1).Select(s => s.Parameters!.Kind).Distinct(), Is.EqualTo(new[] { "shift-log2" }));
    }

    private sealed class CountingSource(ICalibrationSource inner) : ICalibrationSource
    {
        public int BatchesRead { get; private set; }
        public string Name => inner.Name;
        public int Count => inner.Count;
        public IReadOnlyList<int> SampleShape => inner.SampleShape;
        public IEnumerable<SampleBatch> ReadBatches(int batchSize, int maxSamples = int.MaxValue)
        {
            foreach (var b in inner.ReadBatches(batchSize, maxSamples)) { BatchesRead++; yield return b; }
        }
    }

    [Test]
    public void FoldsComposeWithQuantizersTheirStatisticsCarryOver()
    {
        var model = OnnxModelReader.Load(Repo.Model("vit-outliers.opset17.onnx"));
        var perToken = Parse("""{ "extends": "repq", "quantizers": { "post-layernorm": { "kind": "per-token" } } }""");
        var result = Quantizer.Quantize(model, "vit", new NpyTensorSource(Repo.Calibration, null), new QuantizationOptions { Bits = BitWidths.Parse("W4A4"), CalibrationSamples = 32 }, perToken);
        var ln = result.Plan.Sites.Where(s => s.Role == TensorRole.PostLayerNorm).ToList();
        Assert.That(ln.Select(s => s.Parameters!.Kind).Distinct(), Is.EqualTo(new[] { "per-token" }));
        Assert.That(ln.Count(s => s.Notes.Any(n => n.StartsWith("repq: folded"))), Is.EqualTo(13));

        var histogram = Parse("""{ "extends": "repq", "quantizers": { "post-layernorm": { "kind": "outlier-split" } } }""");
        var e = Assert.Throws<OnnxViTQException>(() => Quantizer.Quantize(OnnxModelReader.Load(Repo.Model("vit-outliers.opset17.onnx")), "vit",
            new NpyTensorSource(Repo.Calibration, null), new QuantizationOptions { CalibrationSamples = 32 }, histogram))!;
        Assert.That(e.Message, Does.Contain("quantizer 'outlier-split' needs 'histogram' statistics, which a LayerNorm reparameterization cannot carry over"));
    }
}
