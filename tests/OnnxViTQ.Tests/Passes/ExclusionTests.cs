using System.Text.Json;
using OnnxViTQ.Cli;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Passes.Canonicalize;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

/// <summary>What users keep in float: <c>--exclude</c> patterns (node, tensor, op type, module,
/// <c>re:</c>) and recipe overrides of kind <c>float</c>, applied when quantizers are assigned.</summary>
public class ExclusionTests
{
    private static (QuantizationPlan Plan, PassContext Context) Assign(IEnumerable<string> exclude, QuantizerTable? table = null)
    {
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var context = new PassContext();
        new PassManager([CanonicalizationRules.Pass("model"), new SelectQuantizationSites(), new TagViTRoles(),
            new AssignQuantizers(table ?? new QuantizerTable(), BitWidths.W8A8, "test", new Exclusions(exclude))]).Run(model, context);
        return (context.Get<QuantizationPlan>(), context);
    }

    private static int QuantizedReads(QuantizationPlan plan) => plan.Sites.Sum(s => s.Uses.Count);

    [Test]
    public void EachPatternFormKeepsWhatItNamesInFloat()
    {
        var (all, _) = Assign([]);
        int reads = QuantizedReads(all);
        Assert.That(all.Excluded, Is.Empty);

        // An op type: the patch-embedding Conv, both inputs.
        var (conv, _) = Assign(["Conv"]);
        Assert.That(conv.Excluded.Select(e => (e.Node, e.Input)), Is.EquivalentTo(new[] { ("/conv_proj/Conv", 0), ("/conv_proj/Conv", 1) }));
        Assert.That(conv.QuantizedNodes.Any(n => n.OpType == "Conv"), Is.False);
        Assert.That(QuantizedReads(conv), Is.EqualTo(reads - 2));

        // A module, as inspect names it: the head's Gemm.
        var (head, _) = Assign(["head"]);
        Assert.That(head.Excluded.Select(e => e.Node).Distinct(), Is.EqualTo(new[] { "/heads/head/Gemm" }));
        Assert.That(head.Excluded.All(e => e.Module == "head" && e.Pattern == "head"));

        // A module of several nodes, and a node by name.
        var (mlp, _) = Assign(["mlp 5", "/encoder/layers/encoder_layer_0/mlp/mlp.3/MatMul"]);
        Assert.That(mlp.Excluded.Where(e => e.Pattern == "mlp 5").Select(e => e.Node).Distinct().Count(), Is.EqualTo(2), "fc1 and fc2");
        Assert.That(mlp.Excluded.Where(e => e.Pattern != "mlp 5").Select(e => e.Node).Distinct(), Is.EqualTo(new[] { "/encoder/layers/encoder_layer_0/mlp/mlp.3/MatMul" }));
        Assert.That(QuantizedReads(mlp), Is.EqualTo(reads - 6));

        // A regular expression searched in node names: every attention product of block 0.
        var (regex, _) = Assign(["re:encoder_layer_0/self_attention/MatMul_[12]$"]);
        Assert.That(regex.Excluded.Select(e => e.Role).Order(), Is.EqualTo(new[] { "key", "post-softmax", "query", "value" }));

        // A tensor: quantized for none of its readers; the node's other input stays quantized.
        var postLn = all.Sites.First(s => s.Role == TensorRole.PostLayerNorm && s.Uses.Count == 1);
        var (tensor, _) = Assign([postLn.Name]);
        Assert.That(tensor.Sites.Any(s => s.Name == postLn.Name), Is.False);
        string node = postLn.Uses[0].Node.Name;
        Assert.That(tensor.Excluded.Single(), Is.EqualTo(new ExcludedRead(postLn.Name, node, "MatMul", 0, "post-layernorm", postLn.Module, postLn.Name)));
        Assert.That(tensor.Sites.Any(s => s.IsWeight && s.Uses.Any(u => u.Node.Name == node)), "the weight of the node reading it is still quantized");
    }

    [Test]
    public void APatternThatMatchesNothingIsAnErrorBeforeCalibration()
    {
        var e = Assert.Throws<OnnxViTQException>(() => Assign(["mlp 50"]))!;
        Assert.That(e.Message, Is.EqualTo("recipe 'test': exclusion 'mlp 50' matches no quantized node, tensor, op type or module of the model (`onnxvitq inspect` lists them)"));
        Assert.That(Assert.Throws<OnnxViTQException>(() => new Exclusions(["re:(unclosed"]))!.Message, Does.StartWith("exclusion 're:(unclosed' is not a valid regular expression"));
        Assert.That(Assert.Throws<OnnxViTQException>(() => new Exclusions([" "]))!.Message, Does.StartWith("an exclusion is empty"));
    }

    [Test]
    public void ARecipeOverrideOfKindFloatIsAnExclusion()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("r.json"), """{"extends": "minmax", "overrides": {"/heads/head/Gemm": {"kind": "float"}}}""");
        var recipe = RecipeFile.Load(tmp.File("r.json"));
        var (plan, _) = Assign([], recipe.Quantizers);
        Assert.That(plan.Excluded.Select(e => (e.Node, e.Pattern)).Distinct(), Is.EqualTo(new[] { ("/heads/head/Gemm", "/heads/head/Gemm") }));

        File.WriteAllText(tmp.File("bad.json"), """{"extends": "minmax", "overrides": {"head": {"kind": "float", "bits": 4}}}""");
        Assert.That(Assert.Throws<OnnxViTQException>(() => RecipeFile.Load(tmp.File("bad.json")))!.Message, Does.Contain("kind 'float' takes no bits or options"));
    }

    /// <summary>End to end: the excluded nodes of the written model read float tensors (no
    /// DequantizeLinear in front of them), and the summary, the JSON report and inspect list them.</summary>
    [TestCase("portable")]
    [TestCase("native")]
    public void TheQuantizedModelKeepsExcludedNodesFloatAndSaysSo(string format)
    {
        using var tmp = new TempDir();
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliApp.Run(["quantize", Repo.Model("vit.opset17.onnx"), "-o", tmp.File("q.onnx"), "--calib", Repo.Calibration, "--samples", "32",
            "--format", format, "--exclude", "head", "--exclude", "Conv", "--report", tmp.File("q.json")], stdout, stderr);
        Assert.That(code, Is.Zero, stderr.ToString());
        Assert.That(stdout.ToString(), Does.Contain("kept in float").And.Contain("'head': /heads/head/Gemm (2 inputs)"));

        var q = OnnxModelReader.Load(tmp.File("q.onnx"));
        foreach (var name in new[] { "/heads/head/Gemm", "/conv_proj/Conv" })
        {
            var n = q.Graph.Nodes.Single(x => x.Name == name);
            Assert.That(n.Inputs.Take(2).Select(v => v!.Producer?.OpType), Has.None.EqualTo("DequantizeLinear"), name);
            Assert.That(n.Inputs.Take(2).All(v => v!.Initializer is null || v.Initializer.DataType == OnnxViTQ.Ir.DataType.Float), name);
        }
        using var report = JsonDocument.Parse(File.ReadAllText(tmp.File("q.json")));
        var excluded = report.RootElement.GetProperty("excluded").EnumerateArray().Select(e => (e.GetProperty("node").GetString(), e.GetProperty("pattern").GetString())).ToList();
        Assert.That(excluded.Distinct(), Is.EquivalentTo(new[] { ("/heads/head/Gemm", "head"), ("/conv_proj/Conv", "Conv") }));

        var inspect = new StringWriter();
        Assert.That(CliApp.Run(["inspect", Repo.Model("vit.opset17.onnx"), "--exclude", "head"], inspect, stderr), Is.Zero);
        Assert.That(inspect.ToString(), Does.Contain("Kept in float by --exclude").And.Contain("/heads/head/Gemm"));
    }
}
