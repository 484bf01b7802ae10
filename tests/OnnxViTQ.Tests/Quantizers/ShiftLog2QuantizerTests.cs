using OnnxViTQ.Quantization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Quantizers;

public class ShiftLog2QuantizerTests
{
    [TestCase(4)]
    [TestCase(6)]
    public void ShiftedValuesErrAtMostHalfAnOctave(int bits)
    {
        var q = ShiftLog2Quantizer.ForRange(-0.17f, 6f, bits);
        float smallest = q.Scale * MathF.Pow(2, -((1 << bits) - 1));
        for (int i = 0; i <= 2000; i++)
        {
            float x = -0.17f + 6.17f * i / 2000;
            float shifted = x - q.Shift + q.Epsilon;
            if (shifted < smallest) continue;
            Assert.That(Math.Abs(q.Apply(x) - x), Is.LessThanOrEqualTo((Math.Sqrt(2) - 1) * shifted + 1e-6), $"x = {x}");
        }
    }

    [Test]
    public void LevelsCrowdAtTheMinimumAndReachTheTail()
    {
        var data = QuantizerHarness.Gelu(20000, 5);
        var slq = QuantizerHarness.Fit("shift-log2", 4, data, [1, data.Length], TensorRole.PostGelu);
        var uniform = QuantizerHarness.Fit("uniform", 4, data, [1, data.Length], TensorRole.PostGelu);
        var levels = Enumerable.Range(0, 4000).Select(i => ((ShiftLog2Quantizer)slq).Apply(-0.17f + 8f * i / 4000)).Distinct().Order().ToArray();
        Assert.That(levels.Length, Is.LessThanOrEqualTo(16));
        Assert.That(levels.Count(l => l < 0.3f), Is.GreaterThan(levels.Length / 2), "most levels near GELU's dense region");
        Assert.That(levels.Max(), Is.EqualTo(data.Max()).Within(1e-4), "the largest value is a level");
        // Where post-GELU values crowd (the dip and just above zero) shift-log2 resolves far finer
        // than 4-bit uniform; the price is coarse steps in the sparse tail.
        double DenseError(Quantization.FittedQuantizer q) => data.Zip(QuantizerHarness.Simulate(q, data, [1, data.Length]), (a, b) => (a, b))
            .Where(p => p.a < 0.3f).Average(p => Math.Abs(p.a - p.b));
        Assert.That(DenseError(slq), Is.LessThan(DenseError(uniform) / 2));
        var sorted = Enumerable.Range(0, 1000).Select(i => -0.2f + i / 100f).ToArray();
        var ys = sorted.Select(((ShiftLog2Quantizer)slq).Apply).ToArray();
        for (int i = 1; i < ys.Length; i++) Assert.That(ys[i], Is.GreaterThanOrEqualTo(ys[i - 1]));
    }
}
