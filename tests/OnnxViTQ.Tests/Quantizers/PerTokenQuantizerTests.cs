using OnnxViTQ.Quantization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Quantizers;

public class PerTokenQuantizerTests
{
    [TestCase(4)]
    [TestCase(8)]
    public void EachRowErrsAtMostHalfItsOwnStep(int bits)
    {
        var x = QuantizerHarness.Uniform(10 * 32, 1, -1f, 1f);
        for (int i = 0; i < 32; i++) x[5 * 32 + i] *= 40; // one token with a 40× larger range
        var q = new PerTokenQuantizer(bits);
        var y = QuantizerHarness.Simulate(q, x, [10, 32]);
        for (int r = 0; r < 10; r++)
        {
            var row = x.Skip(r * 32).Take(32).ToArray();
            float step = (Math.Max(row.Max(), 0) - Math.Min(row.Min(), 0)) / ((1 << bits) - 1);
            for (int i = 0; i < 32; i++) Assert.That(Math.Abs(y[r * 32 + i] - row[i]), Is.LessThanOrEqualTo(step / 2 + 1e-5f), $"row {r}");
        }
    }

    [Test]
    public void RowsAreIndependentAndMonotone()
    {
        var x = QuantizerHarness.Uniform(4 * 16, 2, -3f, 2f);
        var q = new PerTokenQuantizer(4);
        var before = QuantizerHarness.Simulate(q, x, [4, 16]);
        for (int i = 0; i < 16; i++) x[16 + i] *= 100; // change row 1 only
        var after = QuantizerHarness.Simulate(q, x, [4, 16]);
        Assert.That(after.Take(16), Is.EqualTo(before.Take(16)));
        Assert.That(after.Skip(32), Is.EqualTo(before.Skip(32)));
        var sorted = Enumerable.Range(0, 64).Select(i => -2f + i / 16f).ToArray();
        var s = QuantizerHarness.Simulate(q, sorted, [1, 64]);
        for (int i = 1; i < s.Length; i++) Assert.That(s[i], Is.GreaterThanOrEqualTo(s[i - 1]));
    }

    [Test]
    public void ZeroRowsStayZero()
    {
        var x = new float[3 * 8];
        x[8] = 1.5f;
        var y = QuantizerHarness.Simulate(new PerTokenQuantizer(4), x, [3, 8]);
        Assert.That(y.Take(8).Concat(y.Skip(16)), Is.All.Zero, "padding tokens stay exactly zero");
    }
}
