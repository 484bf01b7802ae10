using OnnxViTQ.Data;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

public class FitAndCollectTests
{
    [Test]
    public void CollectStatisticsObservesWhatEachSitesQuantizerNeeds()
    {
        var model = OnnxModelReader.Load(Repo.Model("swin.opset17.onnx"));
        var context = new PassContext();
        new SelectQuantizationSites().Run(model, context);
        new TagViTRoles().Run(model, context);
        var table = new QuantizerTable { Default = new("uniform", Options: new Dictionary<string, string> { ["range"] = "percentile" }), Roles = new Dictionary<TensorRole, QuantizerChoice> { [TensorRole.PostSoftmax] = new("log2") } };
        new AssignQuantizers(table, BitWidths.W8A8, "test").Run(model, context);
        var pass = new CollectActivationStatistics(new NpyTensorSource(Repo.Calibration, null), 16, 48, "swin");

        Assert.That(pass.Run(model, context).Modified, Is.False);

        var stats = context.Get<ActivationStatistics>();
        var plan = context.Get<QuantizationPlan>();
        Assert.That(stats.Samples, Is.EqualTo(48));
        foreach (var site in plan.Activations)
        {
            var keys = stats.For(site.Value).Select(o => o.Key).ToList();
            // log2 and the 8-bit image input use min/max, everything else the percentile histogram
            string expected = site.Role is TensorRole.PostSoftmax or TensorRole.Input ? ObserverKeys.MinMax : ObserverKeys.Histogram;
            Assert.That(keys, Does.Contain(expected).And.Contain(ObserverKeys.Rows), site.Name);
            bool linearInput = site.Uses.Any(u => u.InputIndex == 0 && u.Node.OpType is "MatMul" or "Gemm" && u.Node.Inputs[1]!.IsInitializer);
            Assert.That(keys.Contains(ObserverKeys.Channels), Is.EqualTo(linearInput), $"per-channel statistics of linear inputs only: {site.Name}");
            Assert.That(stats.Get<RowSampleObserver>(site.Value, ObserverKeys.Rows).Count, Is.GreaterThan(0));
        }
        Assert.That(context.Diagnostics.Last().Message, Does.StartWith($"calibrated {plan.Activations.Count()} activations on 48 samples"));
    }

    [Test]
    public void FitQuantizersMakesPerChannelWeightsAndPerTensorActivations()
    {
        var model = TinyModels.Attention();
        var input = TinyModels.Random(40, 9);
        var context = PassTestSupport.SelectAndObserve(model, input, [1, 5, 8], new BitWidths(6, 4));

        new FitQuantizers().Run(model, context);

        var plan = context.Get<QuantizationPlan>();
        Assert.That(plan.Weights.Count(), Is.EqualTo(4));
        Assert.That(plan.Activations.Count(), Is.EqualTo(6));
        var wq = plan.Sites.Single(e => e.Name == "w_q");
        var q = (UniformQuantizer)wq.Parameters!;
        Constants.TryGetTensor(wq.Value, out var w);
        var values = w.ToFloats();
        Assert.That((q.Bits, q.Symmetric, q.Axis, q.Scales.Count), Is.EqualTo((6, true, 1, 8)));
        for (int col = 0; col < 8; col++)
            Assert.That(q.Scales[col], Is.EqualTo(Enumerable.Range(0, 8).Max(r => MathF.Abs(values[r * 8 + col])) / 31).Within(1e-7));
        Assert.That(q.Codes, Is.EqualTo(q.QuantizeAll(values, [8, 8])), "weights keep their integer codes");

        var x = plan.Sites.Single(e => e.Name == "x");
        var xq = (UniformQuantizer)x.Parameters!;
        Assert.That((x.Role, xq.Bits, xq.Symmetric, xq.Axis), Is.EqualTo((TensorRole.Input, 8, false, (int?)null)), "the network input stays at 8 bits");
        Assert.That(xq.Scales[0], Is.EqualTo((input.Max() - input.Min()) / 255).Within(1e-6));
        Assert.That(x.Uses.Select(u => u.Node.Name), Is.EqualTo(new[] { "q_proj", "k_proj", "v_proj" }), "not the residual");
        var probs = (UniformQuantizer)plan.Sites.Single(e => e.Name == "probs").Parameters!;
        Assert.That((probs.Bits, probs.Symmetric, probs.Axis), Is.EqualTo((4, false, (int?)null)));
    }

    [Test]
    public void AlreadyFittedSitesAreKept()
    {
        var model = TinyModels.MatMul();
        var context = PassTestSupport.SelectAndObserve(model, TinyModels.Random(32, 3), [1, 4, 8]);
        var plan = context.Get<QuantizationPlan>();
        var x = plan.Activations.Single();
        var fixedQuantizer = UniformQuantizer.Asymmetric(0.5f, 3, 8);
        plan.Update(x with { Parameters = fixedQuantizer });
        new FitQuantizers().Run(model, context);
        Assert.That(plan.For(x.Value).Parameters, Is.SameAs(fixedQuantizer));
        Assert.That(plan.Weights.Single().Parameters, Is.Not.Null);
    }
}
