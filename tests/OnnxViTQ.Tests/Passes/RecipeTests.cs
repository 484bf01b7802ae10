using OnnxViTQ.Data;

namespace OnnxViTQ.Tests.Passes;

public class RecipeTests
{
    [Test]
    public void EveryRecipeBuildsAValidPassList()
    {
        var source = new NpyTensorSource(Support.Repo.Calibration, null);
        foreach (var recipe in Recipes.All)
        {
            var passes = recipe.Build(new RecipeInputs(new QuantizationOptions { Recipe = recipe.Name }, source, "m"));
            Assert.That(passes.Select(p => p.Name), Is.Unique, recipe.Name);
            Assert.That(passes.Select(p => p.Name), Does.Contain("insert-qdq-nodes"), $"{recipe.Name} emits a model");
        }
    }

    [Test]
    public void UnknownRecipesListTheKnownOnes()
    {
        var e = Assert.Throws<OnnxViTQException>(() => Recipes.Get("adaround"))!;
        Assert.That(e.Message, Is.EqualTo("unknown recipe 'adaround'; available: minmax, percentile"));
    }
}
