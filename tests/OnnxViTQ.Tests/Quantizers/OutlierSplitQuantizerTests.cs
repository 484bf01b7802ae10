using OnnxViTQ.Quantization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Quantizers;

public class OutlierSplitQuantizerTests
{
    /// <summary>Post-LN-like rows: 64 channels in [−2, 2], two of them 30× larger.</summary>
    private static float[] WithOutlierChannels(int rows, out long[] shape)
    {
        var x = QuantizerHarness.Uniform(rows * 64, 3, -2f, 2f);
        for (int r = 0; r < rows; r++) { x[r * 64 + 5] *= 30; x[r * 64 + 40] *= 30; }
        shape = [rows, 64];
        return x;
    }

    [Test]
    public void OutliersPassExactlyAndInliersErrAtMostHalfTheInlierStep()
    {
        var q = new OutlierSplitQuantizer(4, alpha: 3f, outlierRatio: 0.03);
        var x = WithOutlierChannels(20, out var shape);
        var y = QuantizerHarness.Simulate(q, x, shape);
        for (int r = 0; r < 20; r++)
        {
            var row = x.Skip(r * 64).Take(64).ToArray();
            var inliers = row.Where(v => Math.Abs(v) < 3f).ToArray();
            float step = (Math.Max(inliers.Max(), 0) - Math.Min(inliers.Min(), 0)) / 15;
            for (int i = 0; i < 64; i++)
            {
                if (Math.Abs(row[i]) >= 3f) Assert.That(y[r * 64 + i], Is.EqualTo(row[i]), "kept in float");
                else Assert.That(Math.Abs(y[r * 64 + i] - row[i]), Is.LessThanOrEqualTo(step / 2 + 1e-5f));
            }
        }
    }

    [Test]
    public void TheSearchFindsTheOutlierChannelsAndReportsTheirShare()
    {
        var x = WithOutlierChannels(256, out var shape);
        var q = (OutlierSplitQuantizer)QuantizerHarness.Fit("outlier-split", 4, x, shape);
        Assert.That(q.OutlierRatio, Is.InRange(0.02, 0.035), "two of 64 channels, nearly all of whose values exceed the inliers");
        Assert.That(q.Alpha, Is.InRange(1.5f, 15f));
        var perToken = QuantizerHarness.Simulate(new PerTokenQuantizer(4), x, shape);
        var split = QuantizerHarness.Simulate(q, x, shape);
        double Error(float[] y) => x.Zip(y, (a, b) => (double)(a - b) * (a - b)).Sum();
        Assert.That(Error(split), Is.LessThan(Error(perToken) / 20), "splitting the outliers off is what makes 4-bit per-token work");
    }

    [Test]
    public void WithoutOutliersFewAreSplitOff()
    {
        var x = QuantizerHarness.Uniform(256 * 64, 4, -2f, 2f);
        var q = (OutlierSplitQuantizer)QuantizerHarness.Fit("outlier-split", 4, x, [256, 64]);
        Assert.That(q.OutlierRatio, Is.LessThanOrEqualTo(0.003));
    }

    [Test]
    public void AFixedAlphaIsUsedAsGiven()
    {
        var x = WithOutlierChannels(64, out var shape);
        var q = (OutlierSplitQuantizer)QuantizerHarness.Fit("outlier-split", 4, x, shape, options: new() { ["alpha"] = "5" });
        Assert.That(q.Alpha, Is.EqualTo(5f));
        Assert.That(q.OutlierRatio, Is.GreaterThan(0.02));
    }
}
