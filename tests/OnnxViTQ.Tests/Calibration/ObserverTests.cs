using OnnxViTQ.Observers;

namespace OnnxViTQ.Tests.Calibration;

public class ObserverTests
{
    private static float[] Normal(int n, int seed, float mean = 0, float std = 1)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ =>
        {
            double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
            return (float)(mean + std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }).ToArray();
    }

    [Test]
    public void MinMaxTracksExtremesAcrossBatches()
    {
        var o = new MinMaxObserver();
        o.Observe([1f, -2f, 3f], [1, 3]);
        o.Observe([0.5f, 7f], [1, 2]);
        Assert.That((o.Min, o.Max, o.Count), Is.EqualTo((-2f, 7f, 5L)));
        Assert.Throws<OnnxViTQException>(() => o.Observe([float.NaN], [1]));
    }

    [Test]
    public void PerChannelUsesTheLastAxis()
    {
        var o = new PerChannelMinMaxObserver();
        // [batch=1, tokens=2, channels=3]
        o.Observe([1, -5, 0, 4, 2, -1], [1, 2, 3]);
        o.Observe([-3, 0, 9], [1, 1, 3]);
        Assert.That(o.Min, Is.EqualTo(new[] { -3f, -5f, -1f }));
        Assert.That(o.Max, Is.EqualTo(new[] { 4f, 2f, 9f }));
    }

    [Test]
    public void PerTokenTracksEachTokenPosition()
    {
        var o = new PerTokenObserver();
        // [batch=2, tokens=2, channels=2]; token 0 has the large range in both samples
        o.Observe([-10, 10, 0, 1, -8, 6, 0, 2], [2, 2, 2]);
        Assert.That(o.Tokens, Is.EqualTo(2));
        Assert.That(o.TokenMin, Is.EqualTo(new[] { -10f, 0f }));
        Assert.That(o.TokenMax, Is.EqualTo(new[] { 10f, 2f }));
        Assert.That(o.MeanRange, Is.EqualTo(new[] { 17.0, 1.5 }));
    }

    [TestCase(0.5)]
    [TestCase(0.99)]
    [TestCase(0.9999)]
    [TestCase(0.0001)]
    public void HistogramQuantilesAreWithinOneBinOfTheExactOnes(double q)
    {
        // Batches that keep widening the range (both sides) exercise the bin merging.
        var h = new HistogramObserver(bins: 2048);
        var all = new List<float>();
        for (int b = 0; b < 20; b++)
        {
            var batch = Normal(5000, b, mean: b * 0.1f, std: 1 + b * 0.2f);
            h.Observe(batch, [batch.Length]);
            all.AddRange(batch);
        }
        all.Sort();
        float exact = all[(int)Math.Clamp(Math.Ceiling(q * all.Count) - 1, 0, all.Count - 1)];
        Assert.That(h.Quantile(q), Is.EqualTo(exact).Within(h.BinWidth * 1.01));
        Assert.That((h.Min, h.Max), Is.EqualTo((all[0], all[^1])));
    }
}
