using OnnxViTQ.Quantization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Quantizers;

public class TwinUniformQuantizerTests
{
    [Test]
    public void SoftmaxModeUsesTheFineRangeBelowTheSplit()
    {
        var data = QuantizerHarness.Softmax(128, 50, 3);
        var q = (TwinUniformQuantizer)QuantizerHarness.Fit("twin-uniform", 6, data, [128, 50], TensorRole.PostSoftmax);
        Assert.That(q.Threshold, Is.GreaterThan(0).And.LessThan(data.Max()));
        Assert.That(q.Step1, Is.LessThan(q.Step2));
        foreach (float x in data)
        {
            float bound = x < q.Threshold ? q.Step1 / 2 : q.Step2 / 2;
            Assert.That(Math.Abs(q.Apply(x) - x), Is.LessThanOrEqualTo(bound + 1e-6f));
        }
    }

    [Test]
    public void SignedModeGivesNegativesAPowerOfTwoFinerStep()
    {
        var data = QuantizerHarness.Gelu(20000, 9);
        var q = (TwinUniformQuantizer)QuantizerHarness.Fit("twin-uniform", 4, data, [1, data.Length], TensorRole.PostGelu);
        Assert.That(q.Threshold, Is.Zero);
        double ratio = Math.Log2(q.Step2 / q.Step1);
        Assert.That(ratio, Is.GreaterThan(0.5).And.EqualTo(Math.Round(ratio)).Within(1e-4), "Δ₂ = 2^m·Δ₁");
        var codes = Enumerable.Range(0, 4000).Select(i => q.Apply(-0.2f + 8f * i / 4000)).Distinct().Count();
        Assert.That(codes, Is.LessThanOrEqualTo(16));
        double NegativeError(Quantization.FittedQuantizer f) => data.Zip(QuantizerHarness.Simulate(f, data, [1, data.Length]), (a, b) => (a, b))
            .Where(p => p.a < 0).Average(p => Math.Abs(p.a - p.b));
        Assert.That(NegativeError(q), Is.LessThan(NegativeError(QuantizerHarness.Fit("uniform", 4, data, [1, data.Length], TensorRole.PostGelu)) / 2),
            "the negative dip gets its own fine range");
    }
}
