using OnnxViTQ.Quantization;

namespace OnnxViTQ.Tests.Quantizers;

public class UniformQuantizerTests
{
    [TestCase(8)]
    [TestCase(6)]
    [TestCase(4)]
    public void AsymmetricUsesAtMostTwoToTheKLevelsAndErrsAtMostHalfAStep(int bits)
    {
        var q = UniformQuantizer.AsymmetricFromRange(-1.3f, 5.1f, bits);
        var xs = Enumerable.Range(0, 10001).Select(i => -1.3f + 6.4f * i / 10000).ToArray();
        var codes = xs.Select(x => q.Quantize(x)).ToArray();
        Assert.That(codes.Distinct().Count(), Is.LessThanOrEqualTo(1 << bits));
        Assert.That(codes.Min(), Is.GreaterThanOrEqualTo(0));
        Assert.That(codes.Max(), Is.LessThanOrEqualTo((1 << bits) - 1));
        float step = q.Scales[0];
        Assert.That(step, Is.EqualTo(6.4f / ((1 << bits) - 1)).Within(1e-6));
        foreach (var x in xs) Assert.That(Math.Abs(q.Dequantize(q.Quantize(x)) - x), Is.LessThanOrEqualTo(step / 2 + 1e-5f));
    }

    [Test]
    public void ZeroIsExactAndTheRangeIsWidenedToIncludeIt()
    {
        var q = UniformQuantizer.AsymmetricFromRange(0.2f, 3f, 8); // softmax-like: all positive
        Assert.That(q.ZeroPoints[0], Is.Zero);
        Assert.That(q.Dequantize(q.Quantize(0f)), Is.Zero);
        var r = UniformQuantizer.AsymmetricFromRange(-1f, 1f, 8);
        Assert.That(r.Dequantize(r.Quantize(0f)), Is.Zero);
    }

    [Test]
    public void ValuesOutsideTheRangeSaturate()
    {
        var q = UniformQuantizer.AsymmetricFromRange(-1f, 1f, 4);
        Assert.That(q.Quantize(100f), Is.EqualTo(15));
        Assert.That(q.Quantize(-100f), Is.EqualTo(0));
    }

    [Test]
    public void SymmetricPerChannelScalesEachRow()
    {
        // weight [out=2, in=3] quantized along axis 0
        float[] w = [0.6f, -1f, 0.25f, 10f, 2f, -3f];
        var q = UniformQuantizer.SymmetricFromMaxAbs(AxisLayout.MaxAbs(w, [2, 3], 0), 8, axis: 0);
        Assert.That(q.Scales, Is.EqualTo(new[] { 1f / 127, 10f / 127 }).Within(1e-7));
        Assert.That(q.ZeroPoints, Is.All.Zero);
        var codes = q.QuantizeAll(w, [2, 3]);
        Assert.That(codes, Is.EqualTo(new[] { 76, -127, 32, 127, 25, -38 }));
        var sim = (float[])w.Clone();
        q.Simulate(sim, [2, 3]);
        for (int i = 0; i < w.Length; i++) Assert.That(sim[i], Is.EqualTo(w[i]).Within(q.Scales[i / 3] / 2));
    }

    [Test]
    public void SymmetricKBitCodesStayInsideTheKBitRange()
    {
        var q = UniformQuantizer.SymmetricFromMaxAbs([2f], 4, null);
        Assert.That((q.QMin, q.QMax), Is.EqualTo((-8, 7)));
        Assert.That(q.Quantize(2f), Is.EqualTo(7));
        Assert.That(q.Quantize(-2f), Is.EqualTo(-7));
    }

    [Test]
    public void RoundingIsHalfToEvenLikeQuantizeLinear()
    {
        var q = UniformQuantizer.SymmetricFromMaxAbs([127f], 8, null); // scale 1
        Assert.That(new[] { 0.5f, 1.5f, 2.5f, -0.5f }.Select(x => q.Quantize(x)), Is.EqualTo(new[] { 0, 2, 2, 0 }));
    }

    [Test]
    public void ConstantZeroTensorsGetAValidScale()
    {
        var q = UniformQuantizer.SymmetricFromMaxAbs([0f], 8, null);
        Assert.That(q.Scales[0], Is.GreaterThan(0));
        Assert.That(q.Dequantize(q.Quantize(0f)), Is.Zero);
    }

    [TestCase("W8A8", 8, 8)]
    [TestCase("w4a6", 4, 6)]
    public void BitWidthsParse(string text, int w, int a) => Assert.That(BitWidths.Parse(text), Is.EqualTo(new BitWidths(w, a)));

    [TestCase("8bit")]
    [TestCase("W9A8")]
    [TestCase("W1A1")]
    public void BadBitWidthsAreRejected(string text) =>
        Assert.That(Assert.Throws<OnnxViTQException>(() => BitWidths.Parse(text))!.Message, Does.Contain(text));

    [Test]
    public void PerChannelSimulationChecksTheChannelCount()
    {
        var q = UniformQuantizer.SymmetricFromMaxAbs([1f, 2f], 8, axis: 0);
        var e = Assert.Throws<ArgumentException>(() => q.Simulate(new float[6], [3, 2]))!;
        Assert.That(e.Message, Does.Contain("axis 0 has 3 channels, the quantizer has 2"));
    }

    [Test]
    public void WeightsKeepTheirCodesAndMseClippingNeverErrsMore()
    {
        var w = Support.QuantizerHarness.Uniform(64 * 16, 5, -1f, 1f);
        w[3] = 9f; // one large weight in channel 3 (axis 1 of [64, 16])
        var plain = UniformQuantizer.FitWeight(w, [64, 16], 4, axis: 1, mse: false);
        var clipped = UniformQuantizer.FitWeight(w, [64, 16], 4, axis: 1, mse: true);
        Assert.That(plain.Codes, Is.EqualTo(plain.QuantizeAll(w, [64, 16])));
        double Error(UniformQuantizer q) { var x = (float[])w.Clone(); q.Simulate(x, [64, 16]); return w.Zip(x, (a, b) => (double)(a - b) * (a - b)).Sum(); }
        Assert.That(Error(clipped), Is.LessThanOrEqualTo(Error(plain)));
        Assert.That(clipped.Scales[3], Is.LessThan(plain.Scales[3]), "the outlier channel is clipped");
        Assert.Throws<ArgumentException>(() => plain.WithCodes([99]), "codes outside the bit width are refused");
    }

    [Test]
    public void AsymmetricCodesAreMonotone()
    {
        var q = UniformQuantizer.AsymmetricFromRange(-0.7f, 2.3f, 4);
        var xs = Enumerable.Range(0, 2001).Select(i => -1f + 4f * i / 2000).ToArray();
        var codes = xs.Select(x => q.Quantize(x)).ToArray();
        for (int i = 1; i < codes.Length; i++) Assert.That(codes[i], Is.GreaterThanOrEqualTo(codes[i - 1]));
    }
}
