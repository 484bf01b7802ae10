using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Ir;
using OnnxViTQ.Passes.Lowering;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Lowering;

/// <summary>
/// com.onnxvitq.QuantizedAttention against a float reference — Q/divisor, K, the probabilities and
/// V each through its quantizer's simulation, products in double, softmax in double — on every
/// kernel path this CPU has: one token, token counts across the 48-row tile and the 16-wide
/// column step, odd head widths, batch > 1, one and several heads, the DeiT-Tiny shape; bad shapes
/// and attributes give ONNX Runtime errors that say what is wrong.
/// </summary>
[NonParallelizable]
public class QuantizedAttentionKernelTests : NativeKernelTest
{
    private static readonly UniformQuantizer Q = UniformQuantizer.AsymmetricFromRange(-1.2f, 1.4f, 8);
    private static readonly UniformQuantizer K = UniformQuantizer.SymmetricFromMaxAbs([1.6f], 8, null);
    private static readonly UniformQuantizer P = UniformQuantizer.AsymmetricFromRange(0f, 0.9f, 8);
    private static readonly UniformQuantizer V = UniformQuantizer.AsymmetricFromRange(-1.5f, 1.9f, 8);

    private static byte[] Model(long[] shape, IEnumerable<AttributeValue> attributes, bool check = true)
    {
        var g = new Graph("quantized_attention");
        var x = g.AddInput("qkv", new TensorTypeInfo(DataType.Float, shape.Select(Dim.Known).ToArray()));
        var y = Node(g, NativeOpSchemas.QuantizedAttention, [x], attributes, "attention", check);
        g.AddOutput(y);
        return OnnxModelWriter.ToBytes(new Model(g, 8, [new OpsetImport("", 17), new OpsetImport(NativeOps.Domain, 1)]));
    }

    private static List<AttributeValue> Attributes(long heads, float divisor) =>
    [
        AttributeValue.Int("heads", heads), AttributeValue.String("layout", "tbd"), AttributeValue.Float("q_divisor", divisor),
        .. LowerActivationProducts.OperandAttributes("q", Q), .. LowerActivationProducts.OperandAttributes("k", K),
        .. LowerActivationProducts.OperandAttributes("p", P), .. LowerActivationProducts.OperandAttributes("v", V),
    ];

    private static float[] Run(byte[] model, float[] x, long[] shape) => RunModel(model, ("qkv", x, shape));

    /// <summary>The portable graph's meaning: out[t, b·H + h, :] = dq(q(P))·dq(q(V)) of batch b, head h.</summary>
    private static float[] Reference(float[] x, int t, int b, int heads, float divisor, out float flip)
    {
        int width = x.Length / (t * b), dim = width / 3, d = dim / heads;
        var y = new float[t * b * heads * d];
        float vmax = 0;
        for (int bb = 0; bb < b; bb++)
            for (int h = 0; h < heads; h++)
            {
                float[] Part(int part, float by)
                {
                    var m = new float[t * d];
                    for (int i = 0; i < t; i++)
                        for (int j = 0; j < d; j++) m[i * d + j] = x[(i * b + bb) * width + part * dim + h * d + j] / by;
                    return m;
                }
                var (q, k, v) = (Part(0, divisor), Part(1, 1), Part(2, 1));
                Q.Simulate(q, [t, d]);
                K.Simulate(k, [t, d]);
                V.Simulate(v, [t, d]);
                vmax = Math.Max(vmax, v.Max(Math.Abs));
                var p = new float[t * t];
                for (int i = 0; i < t; i++)
                {
                    var s = new double[t];
                    for (int j = 0; j < t; j++)
                        for (int c = 0; c < d; c++) s[j] += (double)q[i * d + c] * k[j * d + c];
                    double top = s.Max(), sum = s.Sum(z => Math.Exp(z - top));
                    for (int j = 0; j < t; j++) p[i * t + j] = (float)(Math.Exp(s[j] - top) / sum);
                }
                P.Simulate(p, [t, t]);
                for (int i = 0; i < t; i++)
                    for (int c = 0; c < d; c++)
                    {
                        double acc = 0;
                        for (int j = 0; j < t; j++) acc += (double)p[i * t + j] * v[j * d + c];
                        y[(i * b * heads + bb * heads + h) * d + c] = (float)acc;
                    }
            }
        // A probability within float rounding of a code boundary may land on the other code than
        // in double: one such flip moves an output by one probability step times a V value.
        flip = P.Scales[0] * vmax;
        return y;
    }

    public static IEnumerable<TestCaseData> Shapes()
    {
        foreach (var path in SupportedPaths())
            foreach (var (t, b, heads, d) in new[] { (1, 1, 1, 4), (13, 2, 2, 5), (50, 1, 3, 8), (197, 1, 3, 64), (20, 3, 1, 33) })
                yield return new TestCaseData(path, t, b, heads, d).SetArgDisplayNames(path, $"T={t} B={b} H={heads} d={d}");
    }

    [TestCaseSource(nameof(Shapes))]
    public void MatchesReference(string path, int t, int b, int heads, int d)
    {
        ForcePath(path);
        long[] shape = [t, b, 3 * heads * d];
        var x = TinyModels.Random(t * b * 3 * heads * d, 21, 3f);
        const float divisor = 2.5f;
        var expected = Reference(x, t, b, heads, divisor, out float flip);
        var actual = Run(Model(shape, Attributes(heads, divisor)), x, shape);
        Assert.That(actual, Has.Length.EqualTo(expected.Length));
        double worst = 0, total = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double e = Math.Abs(actual[i] - expected[i]);
            (worst, total) = (Math.Max(worst, e), total + e);
        }
        double scale = expected.Max(Math.Abs) + 1e-6;
        Assert.That(worst, Is.LessThan(2 * flip + 1e-5 * scale), "at most a couple of probability codes off by one per output");
        Assert.That(total / actual.Length / scale, Is.LessThan(1e-4), "mean error");
    }

    [Test]
    public void BadShapesAndAttributesAreAnError()
    {
        var e = Assert.Throws<OnnxRuntimeException>(() => Run(Model([4, 18], Attributes(2, 1)), new float[72], [4, 18]))!;
        Assert.That(e.Message, Does.Contain("QuantizedAttention 'attention'").And.Contain("[4,18]").And.Contain("[T, B, 3·D]"));
        e = Assert.Throws<OnnxRuntimeException>(() => Run(Model([4, 1, 15], Attributes(2, 1)), new float[60], [4, 1, 15]))!;
        Assert.That(e.Message, Does.Contain("D a multiple of heads=2"));
        var noHeads = Attributes(2, 1).Where(a => a.Name != "heads");
        e = Assert.Throws<OnnxRuntimeException>(() => Run(Model([4, 1, 12], noHeads, check: false), new float[48], [4, 1, 12]))!;
        Assert.That(e.Message, Does.Contain("attribute 'heads' is missing"));
        var layout = Attributes(2, 1).Where(a => a.Name != "layout").Append(AttributeValue.String("layout", "btd"));
        e = Assert.Throws<OnnxRuntimeException>(() => Run(Model([4, 1, 12], layout, check: false), new float[48], [4, 1, 12]))!;
        Assert.That(e.Message, Does.Contain("attribute 'layout' must be 'tbd', not 'btd'"));
        e = Assert.Throws<OnnxRuntimeException>(() => Run(Model([4, 1, 12], Attributes(2, 0), check: false), new float[48], [4, 1, 12]))!;
        Assert.That(e.Message, Does.Contain("attribute 'q_divisor' must be finite and non-zero, not 0"));
        var noV = Attributes(2, 1).Where(a => !a.Name.StartsWith("v_", StringComparison.Ordinal));
        e = Assert.Throws<OnnxRuntimeException>(() => Run(Model([4, 1, 12], noV, check: false), new float[48], [4, 1, 12]))!;
        Assert.That(e.Message, Does.Contain("attribute 'v_scale' is missing"));
    }
}
