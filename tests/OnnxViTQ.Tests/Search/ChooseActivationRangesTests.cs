using OnnxViTQ.Data;
using OnnxViTQ.Passes;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Search;

public class ChooseActivationRangesTests
{
    /// <summary>
    /// choose-ranges on the real ViT at W8A8 (where the 99.99th percentile clips what min/max
    /// keeps): some roles take their observed range, every site of a role makes the same choice,
    /// and the chosen plan is closer to FP32 end to end (mean KL, both models run by ONNX Runtime)
    /// than the recipe's all-percentile start on the samples it was chosen on.
    /// </summary>
    [Test]
    public void ObservedRangesAreTakenWhereTheWholeModelGetsCloserToFp32()
    {
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var liu = Recipes.Get("liu2021");
        var recipe = liu with { Passes = liu.Passes.TakeWhile(p => p.Name != "search-intervals").ToList() }; // the choice alone, no emission
        const int samples = 128;
        var source = new NpyTensorSource(Repo.Calibration, null);
        var result = Quantizer.Quantize(model, "vit", source,
            new QuantizationOptions { Recipe = "liu2021", Bits = BitWidths.Parse("W8A8"), CalibrationSamples = samples }, recipe);
        Assert.That(result.Timings.Select(t => t.Pass), Does.Contain("choose-ranges"));
        var candidates = result.Plan.Activations.Where(s => s.Spec is { Kind: "uniform" } spec && spec.Option("range") == "percentile").ToList();
        var observed = candidates.Where(s => s.Spec!.Option("percentile") == "100").ToList();
        Assert.That(observed, Is.Not.Empty, string.Join("; ", result.Diagnostics.Where(d => d.Pass == "choose-ranges").Select(d => d.Message)));
        Assert.That(observed.Count, Is.LessThan(candidates.Count), "not every role: at least one keeps its percentile range");
        foreach (var role in candidates.GroupBy(s => s.Role))
            Assert.That(role.Select(s => s.Spec!.Option("percentile")).Distinct().Count(), Is.EqualTo(1), $"{role.Key}: one choice per role");
        Assert.That(observed.All(s => s.Notes.Any(n => n.StartsWith("range choice:"))), Is.True, "the report says why");

        var check = new PlanCheck(source, 32, samples, "vit");
        var reference = check.Reference(model);
        double chosen = check.Measure(model, result.Plan, reference).MeanKl;
        var fit = new FitContext(result.Statistics);
        foreach (var site in observed)
        {
            var spec = QuantizerRegistry.Spec("uniform", site.Spec!.Bits, site.Role, new Dictionary<string, string> { ["range"] = "percentile" });
            result.Plan.Update(site with { Spec = spec, Parameters = spec.KindInfo.Fit(site with { Spec = spec }, fit) });
        }
        double start = check.Measure(model, result.Plan, reference).MeanKl;
        Assert.That(chosen, Is.LessThan(start), $"mean KL to FP32: all-percentile start {start:g4}, chosen {chosen:g4}");
    }
}
