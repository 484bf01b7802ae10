using OnnxViTQ.Quantization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Quantizers;

/// <summary>Properties every registered quantizer kind must have: it is in the one registry
/// table, fits on calibration statistics, simulates, emits portable ONNX that ONNX Runtime runs
/// to the simulated values, and handles degenerate input (all zero, constant, one value) while
/// rejecting NaN and ±∞ by name.</summary>
public class QuantizerRegistryTests
{
    public static IEnumerable<string> Kinds => QuantizerRegistry.All.Select(k => k.Name);

    /// <summary>Data each kind is meant for, [rows, width].</summary>
    private static (float[] Data, long[] Shape, TensorRole Role) DataFor(string kind) => kind switch
    {
        "log2" or "log-sqrt2" or "tan" => (QuantizerHarness.Softmax(64, 50, 1), [64, 50], TensorRole.PostSoftmax),
        "shift-log2" => (QuantizerHarness.Gelu(64 * 48, 2), [64, 48], TensorRole.PostGelu),
        "twin-uniform" => (QuantizerHarness.Gelu(64 * 48, 3), [64, 48], TensorRole.PostGelu),
        _ => (QuantizerHarness.Uniform(64 * 48, 4, -2f, 5f), [64, 48], TensorRole.PostLayerNorm),
    };

    [Test]
    public void EveryKindInTheAssemblyIsRegisteredOnce()
    {
        var types = typeof(IQuantizerKind).Assembly.GetTypes().Where(t => typeof(IQuantizerKind).IsAssignableFrom(t) && !t.IsInterface && !t.IsAbstract).ToList();
        Assert.That(QuantizerRegistry.All.Select(k => k.GetType()).Distinct(), Is.EquivalentTo(types));
        Assert.That(QuantizerRegistry.All.Select(k => k.Name), Is.Unique);
        Assert.That(QuantizerRegistry.Get("LOG2").Name, Is.EqualTo("log2"), "names are case-insensitive");
        var e = Assert.Throws<OnnxViTQException>(() => QuantizerRegistry.Get("fp4"))!;
        Assert.That(e.Message, Does.StartWith("unknown quantizer 'fp4'; available: uniform, per-token"));
    }

    [TestCaseSource(nameof(Kinds))]
    public void SimulationAndTheEmittedGraphAgree(string kind)
    {
        var (data, shape, role) = DataFor(kind);
        foreach (int bits in new[] { 4, 8 })
        {
            var q = QuantizerHarness.Fit(kind, bits, data, shape, role);
            Assert.That((q.Kind, q.Bits), Is.EqualTo((kind, bits)));
            var simulated = QuantizerHarness.Simulate(q, data, shape);
            foreach (long opset in new long[] { 13, 17, 18 })
            {
                var emitted = QuantizerHarness.RunPortable(q, data, shape, opset);
                // Log and tangent may differ in the last bit between .NET and ONNX Runtime, which can
                // move a value sitting on a rounding boundary to the neighbouring level: rare.
                int differ = simulated.Where((s, i) => Math.Abs(s - emitted[i]) > 1e-6f * Math.Max(1, Math.Abs(s))).Count();
                Assert.That(differ, Is.LessThanOrEqualTo(simulated.Length / 500), $"{kind} {bits}-bit opset {opset}: {differ} of {simulated.Length} differ");
            }
            Assert.That(simulated.All(float.IsFinite));
            Assert.That(q.Describe(), Is.Not.Empty);
        }
    }

    /// <summary>Signal-to-quantization-noise ratio at 8 bits. Logarithmic kinds have a relative
    /// error set by their base whatever the bit width (more bits only reach smaller values).</summary>
    [TestCase("uniform", 35)]
    [TestCase("per-token", 35)]
    [TestCase("outlier-split", 35)]
    [TestCase("twin-uniform", 30)]
    [TestCase("tan", 30)]
    [TestCase("log2", 9)]
    [TestCase("log-sqrt2", 15)]
    [TestCase("shift-log2", 10)]
    public void EightBitsKeepTheSignal(string kind, double minimumSqnrDb)
    {
        var (data, shape, role) = DataFor(kind);
        var q = QuantizerHarness.Fit(kind, 8, data, shape, role);
        var error = OnnxViTQ.Passes.MeasureQuantizationError.Compare(data, QuantizerHarness.Simulate(q, data, shape));
        Assert.That(error.SqnrDb, Is.GreaterThan(minimumSqnrDb), kind);
        Assert.That(error.Cosine, Is.GreaterThan(0.95), kind);
        Assert.That(Kinds, Does.Contain(kind));
    }

    [TestCaseSource(nameof(Kinds))]
    public void DegenerateInputsGiveFiniteExactOrBoundedResults(string kind)
    {
        var role = DataFor(kind).Role;
        foreach (var (name, data) in new (string, float[])[] { ("all zero", new float[32]), ("constant", Enumerable.Repeat(0.25f, 32).ToArray()), ("single value", [0.5f]) })
        {
            long[] shape = [1, data.Length];
            var q = QuantizerHarness.Fit(kind, 4, data, shape, role);
            var x = QuantizerHarness.Simulate(q, data, shape);
            Assert.That(x.All(float.IsFinite), $"{kind}, {name}");
            for (int i = 0; i < x.Length; i++)
                Assert.That(Math.Abs(x[i] - data[i]), Is.LessThanOrEqualTo(Math.Max(0.02f, 0.35f * Math.Abs(data[i]))), $"{kind}, {name}: {data[i]} → {x[i]}");
            if (name == "all zero") Assert.That(x, Is.All.EqualTo(0f).Within(1e-6f), $"{kind}: zeros stay zero");
            var emitted = QuantizerHarness.RunPortable(q, data, shape);
            Assert.That(emitted, Is.EqualTo(x).Within(1e-5f), $"{kind}, {name}: ONNX Runtime agrees");
        }
    }

    [TestCaseSource(nameof(Kinds))]
    public void NanAndInfinityAreRejectedByName(string kind)
    {
        var (data, shape, role) = DataFor(kind);
        var q = QuantizerHarness.Fit(kind, 4, data, shape, role);
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
        {
            var x = (float[])data.Clone();
            x[7] = bad;
            var e = Assert.Throws<OnnxViTQException>(() => q.Simulate(x, shape))!;
            Assert.That(e.Message, Does.Contain("element 7"));
            var fit = Assert.Throws<OnnxViTQException>(() => QuantizerHarness.Fit(kind, 4, x, shape, role))!;
            Assert.That(fit.Message, Does.Contain("'x'").And.Contain(float.IsNaN(bad) ? "NaN" : "∞"), "calibration names the tensor");
        }
    }

    [Test]
    public void SpecsAreValidatedAgainstTheKind()
    {
        Assert.That(Assert.Throws<OnnxViTQException>(() => QuantizerRegistry.Spec("log2", 4, TensorRole.Weight))!.Message,
            Is.EqualTo("quantizer 'log2' applies to activations, not weights"));
        Assert.That(Assert.Throws<OnnxViTQException>(() => QuantizerRegistry.Spec("uniform", 9, TensorRole.Query))!.Message,
            Is.EqualTo("quantizer 'uniform' supports 2 to 8 bits, not 9"));
        Assert.That(Assert.Throws<OnnxViTQException>(() => QuantizerRegistry.Spec("uniform", 8, TensorRole.Query, new Dictionary<string, string> { ["rnage"] = "mse" }))!.Message,
            Is.EqualTo("quantizer 'uniform' has no option 'rnage'; options: range, percentile, symmetric, granularity"));
        Assert.That(Assert.Throws<OnnxViTQException>(() => QuantizerRegistry.Spec("uniform", 8, TensorRole.Query, new Dictionary<string, string> { ["range"] = "max" }))!.Message,
            Is.EqualTo("option 'range' of quantizer 'uniform' = 'max' must be one of minmax, percentile, mse"));
        Assert.That(Assert.Throws<OnnxViTQException>(() => QuantizerRegistry.Spec("uniform", 8, TensorRole.Weight, new Dictionary<string, string> { ["range"] = "percentile" }))!.Message,
            Is.EqualTo("quantizer 'uniform' for weight: weights take range=minmax or range=mse"));
        Assert.That(QuantizerRegistry.Spec("outlier-split", 4, TensorRole.PostLayerNorm, new Dictionary<string, string> { ["alpha"] = "5" }).Number("alpha"), Is.EqualTo(5));
    }
}
