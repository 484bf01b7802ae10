using OnnxViTQ.Runtime;

namespace OnnxViTQ.Tests.Calibration;

public class LatencyBenchmarkTests
{
    [Test]
    public void QuantilesInterpolateBetweenOrderStatistics()
    {
        double[] odd = [5, 1, 3], even = [4, 1, 3, 2];
        Assert.That(LatencyBenchmark.Quantile(odd, 0.5), Is.EqualTo(3));
        Assert.That(LatencyBenchmark.Quantile(even, 0.5), Is.EqualTo(2.5), "the median of an even count is the mean of the middle two");
        Assert.That(LatencyBenchmark.Quantile(even, 0), Is.EqualTo(1));
        Assert.That(LatencyBenchmark.Quantile(even, 1), Is.EqualTo(4));
        Assert.That(LatencyBenchmark.Quantile(Enumerable.Range(0, 11).Select(i => (double)i), 0.1), Is.EqualTo(1).Within(1e-12));
    }

    [Test]
    public void RoundsMustBePositive()
    {
        Assert.Throws<OnnxViTQException>(() => LatencyBenchmark.Measure([], "x", [], [0], rounds: 0));
        Assert.Throws<OnnxViTQException>(() => LatencyBenchmark.Measure([], "x", [], [0], rounds: 1, warmup: -1));
    }
}
