using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Analysis;
using OnnxViTQ.Passes.Reparameterize;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Reparameterize;

/// <summary>The committed outlier variants (models/*-outliers.*) compute what the reference models
/// compute, their post-LayerNorm activations carry outlier channels, and the tool regenerates them
/// byte for byte.</summary>
public class OutlierVariantTests
{
    public static IEnumerable<string> Models => Repo.ReferenceModels;

    [TestCaseSource(nameof(Models))]
    public void TheVariantComputesTheSameLogits(string file)
    {
        var (x, shape) = Ort.CalibrationSamples(32);
        var original = Ort.RunFile(Repo.Model(file), "pixel_values", x, shape)[0];
        var variant = Ort.RunFile(Repo.Model(Repo.OutlierVariant(file)), "pixel_values", x, shape)[0];
        double scale = original.Max(v => Math.Abs(v));
        // scaling γ, β up and weight rows down by the same factor is exact up to float rounding
        Assert.That(original.Zip(variant, (a, b) => Math.Abs(a - b)).Max() / scale, Is.LessThan(1e-5));
    }

    [TestCaseSource(nameof(Models))]
    public void PostLayerNormActivationsCarryOutlierChannels(string file)
    {
        foreach (var (path, outliers) in new[] { (Repo.Model(file), false), (Repo.Model(Repo.OutlierVariant(file)), true) })
        {
            var model = OnnxModelReader.Load(path);
            var groups = LayerNormGroups.Find(model, path).Where(g => g.Foldable).ToList();
            var values = groups.Select(g => g.LayerNorm.Output).ToList();
            var (x, shape) = Ort.CalibrationSamples(16);
            var outputs = Ort.RunWithShapes(Ort.Bytes(model, values), "pixel_values", x, shape, values.Select(v => v.Name).ToArray());
            foreach (var (data, s) in outputs)
            {
                var o = new PerChannelMinMaxObserver();
                o.Observe(data, s);
                var ranges = Enumerable.Range(0, o.Channels).Select(c => (double)(o.Max[c] - o.Min[c])).Order().ToArray();
                double ratio = ranges[^1] / ranges[ranges.Length / 2];
                if (outliers) Assert.That(ratio, Is.GreaterThan(8), $"{path}: widest channel vs median");
                else Assert.That(ratio, Is.LessThan(8), $"{path}: the plain model has no such outliers");
            }
        }
    }

    [TestCaseSource(nameof(Models))]
    public void TheToolRegeneratesTheCommittedVariant(string file)
    {
        var model = OnnxModelReader.Load(Repo.Model(file));
        new PassManager([new InjectOutlierChannels(0.02, 8, 50, 1, file)]).Run(model, new PassContext());
        Assert.That(OnnxModelWriter.ToBytes(model), Is.EqualTo(File.ReadAllBytes(Repo.Model(Repo.OutlierVariant(file)))),
            "models/README.md: onnxvitq outliers <model> -o <variant> (defaults)");
    }
}
