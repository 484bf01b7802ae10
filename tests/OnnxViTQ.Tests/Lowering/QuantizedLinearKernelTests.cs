using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Ir;
using OnnxViTQ.Passes.Lowering;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Lowering;

/// <summary>
/// com.onnxvitq.QuantizedLinear against a float reference (the activation quantizer's own
/// simulation, then X̂·Ŵ + b in double) on every kernel path this CPU has, forced with
/// ONNXVITQ_ISA: odd K and N, one token, batches, static/per-token/outlier activations, int8 and
/// int4 weights, empty and all-outlier rows, constant rows; and bad inputs give errors.
/// </summary>
[NonParallelizable]
public class QuantizedLinearKernelTests : NativeKernelTest
{
    /// <summary>A one-node model: y = QuantizedLinear(x[rows..., k]).</summary>
    private static byte[] Model(int k, int n, int weightBits, int[] codes, float[] scales, float[]? bias, IEnumerable<AttributeValue> activation, long[] xShape,
                                float[]? layerNormScale = null, float[]? layerNormBias = null, bool check = true)
    {
        var g = new Graph("quantized_linear");
        var x = g.AddInput("x", new TensorTypeInfo(DataType.Float, xShape.Select(Dim.Known).ToArray()));
        var packed = g.AddInitializer("w", Tensor.From<byte>(DataType.UInt8, [NativeWeightLayout.Bytes(k, n, weightBits)],
            NativeWeightLayout.Pack((kk, nn) => codes[kk * n + nn], k, n, weightBits)));
        var s = g.AddInitializer("s", Tensor.FromFloats([scales.Length], scales));
        var inputs = new List<Value?> { x, packed, s };
        if (bias is not null) inputs.Add(g.AddInitializer("b", Tensor.FromFloats([n], bias)));
        if (layerNormScale is not null) inputs.Add(g.AddInitializer("ln_scale", Tensor.FromFloats([k], layerNormScale)));
        if (layerNormBias is not null) inputs.Add(g.AddInitializer("ln_bias", Tensor.FromFloats([k], layerNormBias)));
        var attributes = new List<AttributeValue> { AttributeValue.Int("k", k), AttributeValue.Int("n", n), AttributeValue.Int("weight_bits", weightBits) };
        attributes.AddRange(activation);
        var y = Node(g, NativeOpSchemas.QuantizedLinear, inputs, attributes, "linear", check);
        g.AddOutput(y);
        var model = new Model(g, 8, [new OpsetImport("", 17), new OpsetImport(NativeOps.Domain, 1)]);
        return OnnxModelWriter.ToBytes(model);
    }

    private static float[] Reference(float[] x, int k, int n, int[] codes, float[] scales, float[]? bias, FittedQuantizer activation)
    {
        var xq = (float[])x.Clone();
        activation.Simulate(xq, [x.Length / k, k]);
        int m = x.Length / k;
        var y = new float[m * n];
        for (int r = 0; r < m; r++)
            for (int c = 0; c < n; c++)
            {
                double acc = bias?[c] ?? 0;
                for (int i = 0; i < k; i++) acc += (double)xq[r * k + i] * codes[i * n + c] * scales[scales.Length == 1 ? 0 : c];
                y[r * n + c] = (float)acc;
            }
        return y;
    }

    private static float[] Run(byte[] model, float[] x, long[] shape) => RunModel(model, ("x", x, shape));

    private static (int[] Codes, float[] Scales) Weights(int k, int n, int bits, int seed)
    {
        var rng = new Random(seed);
        int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
        var codes = Enumerable.Range(0, k * n).Select(_ => rng.Next(lo, hi + 1)).ToArray();
        var scales = Enumerable.Range(0, n).Select(_ => 0.001f + (float)rng.NextDouble() * 0.01f).ToArray();
        return (codes, scales);
    }

    public static IEnumerable<TestCaseData> Shapes()
    {
        foreach (var path in SupportedPaths())
            foreach (var (shape, k, n) in new (long[], int, int)[]
                     {
                         ([1, 1, 5], 5, 3),       // one token, K and N below the vector widths
                         ([2, 7, 33], 33, 17),    // batch > 1, odd K and N
                         ([3, 197, 192], 192, 576),
                         ([13, 64], 64, 48),      // rank-2 input, rows not a multiple of the tile
                     })
                foreach (int wbits in new[] { 8, 4 })
                    yield return new TestCaseData(path, shape, k, n, wbits).SetArgDisplayNames(path, $"[{string.Join(",", shape)}]x{n}", $"int{wbits}");
    }

    /// <summary>How codes of <paramref name="bits"/> are packed: int4 for 4 bits, else int8.</summary>
    private static int Storage(int bits) => bits == 4 ? 4 : 8;

    public static IEnumerable<TestCaseData> ExtremeCases() =>
        SupportedPaths().SelectMany(path => new[] { 4, 6, 7, 8 }.Select(bits => new TestCaseData(path, bits).SetArgDisplayNames(path, $"{bits}-bit codes")));

    /// <summary>Every activation code 255 against every weight at its most negative code: where a
    /// u8×s8 kernel that adds pairs in int16 saturates (ONNX Runtime's on AVX2), these sums stay exact.</summary>
    [TestCaseSource(nameof(ExtremeCases))]
    public void ExtremeCodesSumExactly(string path, int bits)
    {
        ForcePath(path);
        const int k = 203, n = 21;
        long[] shape = [7, k];
        var codes = Enumerable.Repeat(-(1 << (bits - 1)), k * n).ToArray();
        var scales = Enumerable.Repeat(0.01f, n).ToArray();
        var q = UniformQuantizer.AsymmetricFromRange(0f, 1f, 8);
        var x = Enumerable.Repeat(1f, 7 * k).ToArray();
        var model = Model(k, n, Storage(bits), codes, scales, null, NativeLinearLowering.ActivationAttributes(q, out _)!, shape);
        var expected = Reference(x, k, n, codes, scales, null, q);
        Assert.That(expected[0], Is.EqualTo(k * -(1 << (bits - 1)) * 0.01).Within(1e-3), "every code at its extreme");
        AssertClose(Run(model, x, shape), expected, $"{bits}-bit codes at their extremes", 1e-6);
    }

    [TestCaseSource(nameof(Shapes))]
    public void PerTokenMatchesReference(string path, long[] shape, int k, int n, int weightBits)
    {
        ForcePath(path);
        var x = TinyModels.Random((int)shape.Aggregate(1L, (a, b) => a * b), 3, 2f);
        var (codes, scales) = Weights(k, n, weightBits, 4);
        var bias = TinyModels.Random(n, 5);
        var model = Model(k, n, weightBits, codes, scales, bias, [AttributeValue.String("activation", "token"), AttributeValue.Int("activation_bits", 8)], shape);
        AssertClose(Run(model, x, shape), Reference(x, k, n, codes, scales, bias, new PerTokenQuantizer(8)), "per-token", 2e-5);
    }

    [TestCaseSource(nameof(Shapes))]
    public void OutlierSplitMatchesReference(string path, long[] shape, int k, int n, int weightBits)
    {
        ForcePath(path);
        var x = TinyModels.Random((int)shape.Aggregate(1L, (a, b) => a * b), 6, 2f);
        // A few large values per row, one all-outlier row and one constant row.
        for (int i = 0; i < x.Length; i += 17) x[i] *= 40;
        for (int i = 0; i < k; i++) x[i] = 50 + i;
        if (x.Length >= 2 * k) for (int i = k; i < 2 * k; i++) x[i] = 0.75f;
        var (codes, scales) = Weights(k, n, weightBits, 7);
        var model = Model(k, n, weightBits, codes, scales, null,
            [AttributeValue.String("activation", "token"), AttributeValue.Int("activation_bits", 6), AttributeValue.Float("outlier_alpha", 10f)], shape);
        AssertClose(Run(model, x, shape), Reference(x, k, n, codes, scales, null, new OutlierSplitQuantizer(6, 10f, 0)), "outlier-split", 2e-5);
    }

    [TestCaseSource(nameof(Shapes))]
    public void StaticMatchesReference(string path, long[] shape, int k, int n, int weightBits)
    {
        ForcePath(path);
        var x = TinyModels.Random((int)shape.Aggregate(1L, (a, b) => a * b), 8, 2f);
        var (codes, scales) = Weights(k, n, weightBits, 9);
        var bias = TinyModels.Random(n, 10);
        foreach (var q in new[] { UniformQuantizer.AsymmetricFromRange(-1.5f, 2.5f, 8), UniformQuantizer.SymmetricFromMaxAbs([1.8f], 8, null), UniformQuantizer.AsymmetricFromRange(-2f, 1f, 5) })
        {
            var attributes = NativeLinearLowering.ActivationAttributes(q, out _)!;
            var model = Model(k, n, weightBits, codes, scales, bias, attributes, shape);
            AssertClose(Run(model, x, shape), Reference(x, k, n, codes, scales, bias, q), q.ToString(), 2e-5);
        }
    }

    /// <summary>activation = "shift-log2" (ADFQ-ViT's post-GELU quantizer, fitted on GELU-like
    /// values): 4- and 8-bit levels, values below the calibration minimum and above its maximum, and
    /// just above the minimum, where the levels are past the op's int16 range.</summary>
    [TestCaseSource(nameof(Shapes))]
    public void ShiftLog2MatchesReference(string path, long[] shape, int k, int n, int weightBits)
    {
        ForcePath(path);
        var u = TinyModels.Random((int)shape.Aggregate(1L, (a, b) => a * b), 14, 3f);
        // GELU of ±3: the dense dip near −0.17 and a positive tail.
        var x = u.Select(v => (float)(0.5 * v * (1 + QuantizerHarness.Erf(v / Math.Sqrt(2))))).ToArray();
        // Every 7th value just above the range minimum: levels past the op's int16 range (q > 15),
        // which it adds in float (GELU's flat minimum puts many calibration values there).
        for (int i = 0; i < x.Length; i += 7) x[i] = -0.1f + 1e-6f * (1 + i % 50);
        var (codes, scales) = Weights(k, n, weightBits, 15);
        var bias = TinyModels.Random(n, 16);
        foreach (int bits in new[] { 4, 8 })
        {
            var q = ShiftLog2Quantizer.ForRange(-0.1f, 2.5f, bits);  // some values below and above the range
            var attributes = NativeLinearLowering.ActivationAttributes(q, out _)!;
            // 2e-6, tighter than the other modes: without the float residual of the levels past
            // int16 the 8-bit error was up to 1.2e-5 of max |y| here; with it ≤ 4e-7.
            AssertClose(Run(Model(k, n, weightBits, codes, scales, bias, attributes, shape), x, shape), Reference(x, k, n, codes, scales, bias, q), q.ToString(), 2e-6);
        }
    }

    /// <summary>epilogue = "gelu": the reference output through the exact GELU, per-token and
    /// outlier-split (where GELU follows the float residual).</summary>
    [TestCaseSource(nameof(Shapes))]
    public void GeluEpilogueMatchesReference(string path, long[] shape, int k, int n, int weightBits)
    {
        ForcePath(path);
        var x = TinyModels.Random((int)shape.Aggregate(1L, (a, b) => a * b), 11, 2f);
        for (int i = 0; i < x.Length; i += 13) x[i] *= 8;  // past outlier_alpha below
        var (codes, scales) = Weights(k, n, weightBits, 12);
        // Outputs of a few units (max ~10): GELU's curved part and both tails, at a tolerance of ~2e-4.
        for (int c = 0; c < n; c++) scales[c] *= 2f / MathF.Sqrt(k) * (weightBits == 4 ? 16 : 1);
        var bias = TinyModels.Random(n, 13);
        var gelu = AttributeValue.String("epilogue", "gelu");
        foreach (var (attributes, q) in new (AttributeValue[], FittedQuantizer)[]
                 {
                     ([AttributeValue.String("activation", "token"), AttributeValue.Int("activation_bits", 8), gelu], new PerTokenQuantizer(8)),
                     ([AttributeValue.String("activation", "token"), AttributeValue.Int("activation_bits", 8), AttributeValue.Float("outlier_alpha", 10f), gelu], new OutlierSplitQuantizer(8, 10f, 0)),
                 })
        {
            var expected = Reference(x, k, n, codes, scales, bias, q).Select(v => (float)(0.5 * v * (1 + QuantizerHarness.Erf(v / Math.Sqrt(2))))).ToArray();
            AssertClose(Run(Model(k, n, weightBits, codes, scales, bias, attributes, shape), x, shape), expected, $"{q} + GELU", 2e-5);
        }
    }

    /// <summary>layernorm inputs: the op LayerNorm-s each row before quantizing it; the reference is
    /// LayerNorm in double, then the quantizer's simulation and the product. A float-vs-double
    /// difference can move a static code by one step now and then, so the bound is one step of one
    /// element against the largest output, and the mean error stays at float level.</summary>
    [TestCaseSource(nameof(Shapes))]
    public void LayerNormInputMatchesReference(string path, long[] shape, int k, int n, int weightBits)
    {
        ForcePath(path);
        var x = TinyModels.Random((int)shape.Aggregate(1L, (a, b) => a * b), 17, 3f);
        for (int i = 0; i < x.Length; i++) x[i] += i % k == 0 ? 5f : 0.5f;  // rows with a mean and an outlying channel
        var gamma = TinyModels.Random(k, 18, 2f);
        var beta = TinyModels.Random(k, 19, 0.5f);
        var (codes, scales) = Weights(k, n, weightBits, 20);
        var bias = TinyModels.Random(n, 21);
        const float epsilon = 1e-6f;
        var normalised = new float[x.Length];
        for (int r = 0; r < x.Length / k; r++)
        {
            var row = x.AsSpan(r * k, k);
            double mean = 0, squares = 0;
            foreach (float v in row) { mean += v; squares += (double)v * v; }
            mean /= k;
            double deviation = Math.Sqrt(squares / k - mean * mean + epsilon);
            for (int i = 0; i < k; i++) normalised[r * k + i] = (float)((row[i] - mean) / deviation * gamma[i] + beta[i]);
        }
        foreach (var (attributes, q) in new (AttributeValue[], FittedQuantizer)[]
                 {
                     ([AttributeValue.String("activation", "token"), AttributeValue.Int("activation_bits", 8)], new PerTokenQuantizer(8)),
                     ([.. NativeLinearLowering.ActivationAttributes(UniformQuantizer.AsymmetricFromRange(-4f, 5f, 8), out _)!], UniformQuantizer.AsymmetricFromRange(-4f, 5f, 8)),
                 })
        {
            var model = Model(k, n, weightBits, codes, scales, bias, [.. attributes, AttributeValue.Float("layernorm_epsilon", epsilon)], shape, gamma, beta);
            var actual = Run(model, x, shape);
            var expected = Reference(normalised, k, n, codes, scales, bias, q);
            double step = 9f / 255 * 128 * scales.Max();
            AssertClose(actual, expected, $"{q} after LayerNorm", step / expected.Max(v => Math.Abs(v)) + 2e-5);
            double meanError = actual.Zip(expected, (a, b) => Math.Abs(a - b)).Average();
            Assert.That(meanError, Is.LessThan(1e-4 * expected.Max(v => Math.Abs(v))), $"{q}: mean |Δ| {meanError:g3}");
        }
    }

    public static IEnumerable<string> Paths() => SupportedPaths();

    /// <summary>The per-path cases above test the path they name: the library sees the forced
    /// path (a session created now uses it).</summary>
    [TestCaseSource(nameof(Paths))]
    public void TheForcedPathIsTheOneTheLibraryUses(string path)
    {
        ForcePath(path);
        Assert.That(NativeOps.KernelPath, Is.EqualTo(path));
        ForcePath(null);
        Assert.That(NativeOps.KernelPath, Is.EqualTo(SupportedPaths().First()), "unforced: the fastest path this CPU has");
    }

    /// <summary>Bad inputs and attributes are ONNX Runtime errors naming the op, the node and what is wrong.</summary>
    [Test]
    public void BadInputsAreAnError()
    {
        var (codes, scales) = Weights(8, 5, 8, 1);
        var token = new[] { AttributeValue.String("activation", "token") };
        var model = Model(8, 5, 8, codes, scales, null, token, [2, 7]); // declared as fed: the op itself must refuse it
        var e = Assert.Throws<OnnxRuntimeException>(() => Run(model, new float[14], [2, 7]))!;
        Assert.That(e.Message, Does.Contain("QuantizedLinear 'linear'").And.Contain("input X has shape [2,7]; its last axis must be k=8"));
        var badMode = Model(8, 5, 8, codes, scales, null, [AttributeValue.String("activation", "channel")], [2, 8], check: false);
        e = Assert.Throws<OnnxRuntimeException>(() => Run(badMode, new float[16], [2, 8]))!;
        Assert.That(e.Message, Does.Contain("QuantizedLinear 'linear'").And.Contain("attribute 'activation' must be 'token', 'static' or 'shift-log2', not 'channel'"));
        var q = NativeLinearLowering.ActivationAttributes(ShiftLog2Quantizer.ForRange(-0.2f, 3f, 4), out _)!;
        var badShift = Model(8, 5, 8, codes, scales, null, q.Where(a => a.Name != "activation_scale"), [2, 8], check: false);
        e = Assert.Throws<OnnxRuntimeException>(() => Run(badShift, new float[16], [2, 8]))!;
        Assert.That(e.Message, Does.Contain("QuantizedLinear 'linear'").And.Contain("attribute 'activation_scale' is missing"));
        var badEpsilon = Model(8, 5, 8, codes, scales, null, [.. q.Where(a => a.Name != "activation_epsilon"), AttributeValue.Float("activation_epsilon", -1f)], [2, 8], check: false);
        e = Assert.Throws<OnnxRuntimeException>(() => Run(badEpsilon, new float[16], [2, 8]))!;
        Assert.That(e.Message, Does.Contain("attribute 'activation_epsilon' must be finite and ≥ 0, not -1"));
        var badEpilogue = Model(8, 5, 8, codes, scales, null, [.. token, AttributeValue.String("epilogue", "relu")], [2, 8], check: false);
        e = Assert.Throws<OnnxRuntimeException>(() => Run(badEpilogue, new float[16], [2, 8]))!;
        Assert.That(e.Message, Does.Contain("QuantizedLinear 'linear'").And.Contain("attribute 'epilogue' must be 'none' or 'gelu', not 'relu'"));
    }
}
