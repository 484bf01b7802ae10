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
    [TestCase(OutputFormat.Portable, "fit-quantizers,measure-error,emit-portable,remove-unused-constants")]
    [TestCase(OutputFormat.Native, "fit-quantizers,measure-error,lower-native,fuse-native-attention,lower-native-products,emit-portable,fuse-native-layernorm,remove-unused-constants")]
    [TestCase(OutputFormat.Ort, "fit-quantizers,measure-error,lower-ort,emit-portable,store-weights-unsigned,remove-unused-constants")]
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
        Assert.That(e.Message, Is.EqualTo("pass 'collect-statistics' needs QuantizersAssigned, which no earlier pass produces (check the recipe's pass order)"));
    }
}
