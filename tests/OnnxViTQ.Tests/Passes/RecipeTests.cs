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
