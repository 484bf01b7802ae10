using OnnxViTQ.Quantization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Quantizers;

public class LogQuantizerTests
{
    [TestCase(1, 4)]
    [TestCase(2, 4)]
    [TestCase(1, 8)]
    [TestCase(2, 6)]
    public void RelativeErrorIsBoundedByHalfAStepInTheLogDomain(int stepsPerOctave, int bits)
    {
        var q = new LogQuantizer("log", bits, stepsPerOctave, scale: 1f);
        int lowestCode = (1 << bits) - 2;
        float smallest = MathF.Pow(2, -(float)lowestCode / stepsPerOctave);
        double bound = Math.Pow(2, 0.5 / stepsPerOctave) - 1; // rounding −n·log2(x) to an integer
        for (int i = 0; i <= 4000; i++)
        {
            float x = MathF.Pow(2, MathF.Log2(smallest) * i / 4000f);
            Assert.That(Math.Abs(q.Apply(x) - x), Is.LessThanOrEqualTo(bound * x + 1e-7), $"x = {x}");
        }
    }

    [Test]
    public void ZeroHasACodeLargeValuesSaturateAndLevelsAreMonotone()
    {
        var q = new LogQuantizer("log2", 4, 1, scale: 0.5f);
        Assert.That(q.Apply(0f), Is.Zero);
        Assert.That(q.Apply(-1f), Is.Zero);
        Assert.That(q.Apply(1e-9f), Is.Zero, "below the smallest level: the zero code");
        Assert.That(q.Apply(3f), Is.EqualTo(0.5f), "above s: saturates at s");
        var xs = Enumerable.Range(0, 1000).Select(i => i / 1000f).ToArray();
        var ys = xs.Select(q.Apply).ToArray();
        for (int i = 1; i < ys.Length; i++) Assert.That(ys[i], Is.GreaterThanOrEqualTo(ys[i - 1]));
        Assert.That(ys.Distinct().Count(), Is.LessThanOrEqualTo(16));
    }

    [Test]
    public void LogSqrt2HasTwiceTheResolutionOfLog2()
    {
        var data = QuantizerHarness.Softmax(128, 50, 7);
        var log2 = QuantizerHarness.Fit("log2", 4, data, [128, 50], TensorRole.PostSoftmax);
        var sqrt2 = QuantizerHarness.Fit("log-sqrt2", 4, data, [128, 50], TensorRole.PostSoftmax);
        double Error(Quantization.FittedQuantizer q) => data.Zip(QuantizerHarness.Simulate(q, data, [128, 50]), (a, b) => (double)(a - b) * (a - b)).Sum();
        Assert.That(Error(sqrt2), Is.LessThan(Error(log2)));
    }
}
