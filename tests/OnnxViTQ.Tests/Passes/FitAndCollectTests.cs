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
    public void CollectActivationStatisticsObservesEveryTargetActivation()
    {
        var model = OnnxModelReader.Load(Repo.Model("swin.opset17.onnx"));
        var context = new PassContext();
        new SelectMatMulTargets().Run(model, context);
        var pass = new CollectActivationStatistics(new NpyTensorSource(Repo.Calibration, null), new PercentileRange(99.9), 16, 48, "swin");

        Assert.That(pass.Run(model, context).Modified, Is.False);

        var stats = context.Get<ActivationStatistics>();
        var activations = context.Get<QuantizationTargets>().Activations;
        Assert.That(stats.Samples, Is.EqualTo(48));
        Assert.That(stats.Observers.Keys, Is.EquivalentTo(activations));
        foreach (var h in stats.Observers.Values.Cast<HistogramObserver>())
            Assert.That(h.Count, Is.GreaterThan(0));
        Assert.That(context.Diagnostics.Single().Message, Does.StartWith($"calibrated {activations.Count} activations on 48 samples"));
    }

    [Test]
    public void FitUniformQuantizersMakesPerChannelWeightsAndPerTensorActivations()
    {
        var model = TinyModels.Attention();
        var input = TinyModels.Random(40, 9);
        var context = PassTestSupport.SelectAndObserve(model, input, [1, 5, 8]);

        new FitUniformQuantizers(new BitWidths(6, 4), new MinMaxRange()).Run(model, context);

        var plan = context.Get<QuantizationPlan>();
        Assert.That(plan.Entries.Count(e => e.Role == TensorRole.Weight), Is.EqualTo(4));
        Assert.That(plan.Entries.Count(e => e.Role == TensorRole.Activation), Is.EqualTo(6));
        var wq = plan.Entries.Single(e => e.Value.Name == "w_q");
        var q = (UniformQuantizer)wq.Quantizer;
        Constants.TryGetTensor(wq.Value, out var w);
        var values = w.ToFloats();
        Assert.That((q.Bits, q.Symmetric, q.Axis, q.Scales.Count), Is.EqualTo((6, true, 1, 8)));
        for (int col = 0; col < 8; col++)
            Assert.That(q.Scales[col], Is.EqualTo(Enumerable.Range(0, 8).Max(r => MathF.Abs(values[r * 8 + col])) / 31).Within(1e-7));

        var x = plan.Entries.Single(e => e.Value.Name == "x");
        var xq = (UniformQuantizer)x.Quantizer;
        Assert.That((xq.Bits, xq.Symmetric, xq.Axis), Is.EqualTo((4, false, (int?)null)));
        Assert.That(xq.Scales[0], Is.EqualTo((input.Max() - input.Min()) / 15).Within(1e-6));
        Assert.That(x.Uses.Select(u => u.Node.Name), Is.EqualTo(new[] { "q_proj", "k_proj", "v_proj" }), "not the residual");
    }
}
