using OnnxViTQ.Data;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Tests.Passes;

public class RecipeTests
{
    [Test]
    public void EveryRecipeBuildsAValidPassList()
    {
        var source = new NpyTensorSource(Support.Repo.Calibration, null);
        foreach (var recipe in Recipes.All)
            foreach (var bits in new[] { "W8A8", "W4A4" })
            {
                var passes = recipe.Build(new QuantizationOptions { Recipe = recipe.Name, Bits = BitWidths.Parse(bits) }, source, "m");
                Assert.That(passes.Select(p => p.Name), Does.Contain("emit-portable"), $"{recipe.Name} emits a model");
                Assert.DoesNotThrow(() => new PassManager(passes).CheckOrder(new PassContext()), recipe.Name);
            }
    }

    /// <summary>Each format's lowering goes right before the emitter; --format native lowers the
    /// log2 softmax products after its linear layers and fuses LayerNorm and GELU into its ops
    /// right after the emitter; --format ort (or a recipe that names lower-ort) stores
    /// overflowing int8 weights unsigned right after it.</summary>
    [TestCase(OutputFormat.Portable, "fit-quantizers,correct-conv-bias,warn-outlier-channels,measure-error,emit-portable,remove-unused-constants")]
    [TestCase(OutputFormat.Native, "fit-quantizers,correct-conv-bias,warn-outlier-channels,measure-error,lower-native,fuse-native-attention,lower-native-products,emit-portable,fuse-native-layernorm,remove-unused-constants")]
    [TestCase(OutputFormat.Ort, "fit-quantizers,correct-conv-bias,warn-outlier-channels,measure-error,lower-ort,emit-portable,store-weights-unsigned,remove-unused-constants")]
    public void FormatsPlaceTheirPasses(OutputFormat format, string tail)
    {
        var source = new NpyTensorSource(Support.Repo.Calibration, null);
        var names = Recipes.Get("minmax").Build(new QuantizationOptions { Format = format }, source, "m").Select(p => p.Name).ToList();
        Assert.That(string.Join(",", names.SkipWhile(n => n != "fit-quantizers")), Is.EqualTo(tail));
        var named = Recipes.Get("minmax") with { Passes = [.. Recipes.Get("minmax").Passes.Where(p => p.Name != "emit-portable"), new("lower-ort"), new("emit-portable")] };
        Assert.That(named.Build(new QuantizationOptions(), source, "m").Select(p => p.Name).TakeLast(2), Is.EqualTo(new[] { "emit-portable", "store-weights-unsigned" }));
    }

    [Test]
    public void UnknownRecipesListTheKnownOnes()
    {
        var e = Assert.Throws<OnnxViTQException>(() => Recipes.Get("adaround"))!;
        Assert.That(e.Message, Does.StartWith("unknown recipe 'adaround'; available: minmax, percentile, "));
    }

    [Test]
    public void PassesInTheWrongOrderAreRejectedBeforeRunning()
    {
        var recipe = Recipes.Get("minmax") with
        {
            Passes = [new("canonicalize"), new("select-sites"), new("collect-statistics"), new("assign-quantizers"), new("fit-quantizers"), new("emit-portable")],
        };
        var passes = recipe.Build(new QuantizationOptions(), new NpyTensorSource(Support.Repo.Calibration, null), "m");
        var e = Assert.Throws<OnnxViTQException>(() => new PassManager(passes).CheckOrder(new PassContext()))!;
        Assert.That(e.Message, Is.EqualTo("pass 'collect-statistics' requires quantizers-assigned (a quantizer spec per site), which no earlier pass produces: run 'assign-quantizers' before 'collect-statistics'"));
    }

    private static string OrderError(Recipe recipe, QuantizationOptions? options = null)
    {
        var passes = recipe.Build(options ?? new QuantizationOptions(), new NpyTensorSource(Support.Repo.Calibration, null), "m");
        var e = Assert.Throws<OnnxViTQException>(() => new PassManager(passes) { Goals = [Stages.PortableEmitted] }.CheckOrder(new PassContext()))!;
        return e.Message;
    }

    /// <summary>The order is declared once, on the passes (requires, produces, invalidates), and a
    /// recipe that breaks it is refused before calibration with both passes named.</summary>
    [Test]
    public void TheDeclaredOrderRefusesBrokenRecipes()
    {
        var repq = Recipes.Get("repq");
        var noRoles = repq with { Passes = repq.Passes.Where(p => p.Name != "tag-roles").ToList() };
        Assert.That(OrderError(noRoles), Is.EqualTo("pass 'assign-quantizers' requires roles-tagged (every site's ViT role and module), which no earlier pass produces: run 'tag-roles' before 'assign-quantizers'"));

        var fold = repq.Passes.First(p => p.Name == "fold-layernorm");
        var late = repq with { Passes = [.. repq.Passes.Where(p => p != fold).SelectMany(p => p.Name == "fit-quantizers" ? new[] { p, fold } : [p])] };
        Assert.That(OrderError(late), Is.EqualTo("pass 'fold-layernorm-repq' invalidates quantizers-fitted (every site's quantizer parameters), which 'fit-quantizers' produced before it: run 'fold-layernorm-repq' before 'fit-quantizers'"));

        var minmax = Recipes.Get("minmax");
        var search = minmax with { Passes = [.. minmax.Passes.SelectMany(p => p.Name == "emit-portable" ? new[] { p, new PassStep("search-intervals") } : [p])] };
        Assert.That(OrderError(search), Is.EqualTo("pass 'search-intervals' invalidates portable-emitted (the plan's remaining quantizers written as standard ONNX), which 'emit-portable' produced before it: run 'search-intervals' before 'emit-portable'"));

        var unlowered = minmax with { Passes = [.. minmax.Passes.SelectMany(p => p.Name == "emit-portable" ? new[] { p, new PassStep("fuse-native-layernorm") } : [p])] };
        Assert.That(OrderError(unlowered), Is.EqualTo("pass 'fuse-native-layernorm' requires native-linears (linear layers as com.onnxvitq.QuantizedLinear), which no earlier pass produces: run 'lower-native' before 'fuse-native-layernorm'"));

        var nothing = minmax with { Passes = minmax.Passes.Where(p => p.Name != "emit-portable").ToList() };
        Assert.That(OrderError(nothing), Is.EqualTo("no pass produces portable-emitted (the plan's remaining quantizers written as standard ONNX): add 'emit-portable'"));
    }

    /// <summary>A recipe can take any pass out by name, the ones a format adds included; removing a
    /// pass the list does not have, or an unknown one, is an error.</summary>
    [Test]
    public void RecipesRemovePassesByName()
    {
        var source = new NpyTensorSource(Support.Repo.Calibration, null);
        var native = new QuantizationOptions { Format = OutputFormat.Native };
        var unfused = Recipes.Get("minmax") with { Removed = ["fuse-native-attention", "fuse-native-layernorm"] };
        var names = unfused.Build(native, source, "m").Select(p => p.Name).ToList();
        Assert.That(string.Join(",", names.SkipWhile(n => n != "fit-quantizers")),
            Is.EqualTo("fit-quantizers,correct-conv-bias,warn-outlier-channels,measure-error,lower-native,lower-native-products,emit-portable,remove-unused-constants"));
        var noMeasure = Recipes.Get("minmax") with { Removed = ["measure-error"] };
        Assert.That(noMeasure.Build(new QuantizationOptions(), source, "m").Select(p => p.Name), Does.Not.Contain("measure-error"));
        var absent = Recipes.Get("minmax") with { Removed = ["search-intervals"] };
        var e = Assert.Throws<OnnxViTQException>(() => absent.Build(new QuantizationOptions(), source, "m"))!;
        Assert.That(e.Message, Is.EqualTo("recipe 'minmax' removes 'search-intervals', which its pass list does not have"));
        var unknown = Recipes.Get("minmax") with { Removed = ["fuse-everything"] };
        e = Assert.Throws<OnnxViTQException>(() => unknown.Build(new QuantizationOptions(), source, "m"))!;
        Assert.That(e.Message, Does.StartWith("unknown pass 'fuse-everything'; passes: canonicalize, "));
    }
}
