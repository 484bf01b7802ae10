using OnnxViTQ.Quantization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Quantizers;

public class TanQuantizerTests
{
    [Test]
    public void LevelsAreDenseNearZeroAndNearTheMaximum()
    {
        var q = new TanQuantizer(4, scale: 1f, kappa: 8f, centre: 0.5f);
        var levels = q.Levels;
        Assert.That(levels[0], Is.Zero, "zero is exact");
        Assert.That(levels[^1], Is.EqualTo(1f).Within(1e-6));
        var gaps = levels.Zip(levels.Skip(1), (a, b) => b - a).ToArray();
        Assert.That(gaps, Is.All.Positive, "levels strictly increase");
        float middle = gaps[gaps.Length / 2];
        Assert.That(gaps[0], Is.LessThan(middle / 4));
        Assert.That(gaps[^1], Is.LessThan(middle / 4));
    }

    [Test]
    public void EachValueGoesToANearbyLevel()
    {
        var q = new TanQuantizer(4, 1f, 8f, 0.5f);
        float maxGap = q.Levels.Zip(q.Levels.Skip(1), (a, b) => b - a).Max();
        for (int i = 0; i <= 5000; i++)
        {
            float x = i / 5000f;
            Assert.That(Math.Abs(q.Apply(x) - x), Is.LessThanOrEqualTo(maxGap / 2 + 1e-6f), $"x = {x}");
        }
        var ys = Enumerable.Range(0, 1000).Select(i => q.Apply(i / 1000f)).ToArray();
        for (int i = 1; i < ys.Length; i++) Assert.That(ys[i], Is.GreaterThanOrEqualTo(ys[i - 1]), "monotone");
    }

    [Test]
    public void OnAttentionProbabilitiesItErrsLessThanLog2AndLogSqrt2()
    {
        var data = QuantizerHarness.Softmax(256, 50, 11, temperature: 4f);
        double Error(string kind) =>
            data.Zip(QuantizerHarness.Simulate(QuantizerHarness.Fit(kind, 4, data, [256, 50], TensorRole.PostSoftmax), data, [256, 50]), (a, b) => (double)(a - b) * (a - b)).Sum();
        Assert.That(Error("tan"), Is.LessThan(Error("log2")));
        Assert.That(Error("tan"), Is.LessThan(Error("log-sqrt2")));
    }
}
