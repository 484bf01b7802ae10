using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Ir;
using OnnxViTQ.Passes.Lowering;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Lowering;

/// <summary>
/// com.onnxvitq.QuantizedMatMul (the attention products) against a float reference — each
/// operand through its quantizer's own simulation, then the batched product in double — on every
/// kernel path this CPU has (ONNXVITQ_ISA): one row, K below and across the 16-wide step, odd N,
/// rank 2 to 4, the DeiT-Tiny Q·Kᵀ and softmax·V shapes, values outside the range (clamped),
/// constant rows; and bad shapes or attributes give ONNX Runtime errors that say what is wrong.
/// </summary>
[NonParallelizable]
public class QuantizedMatMulKernelTests : NativeKernelTest
{
    private static byte[] Model(long[] aShape, long[] bShape, IEnumerable<AttributeValue> attributes, bool check = true)
    {
        var g = new Graph("quantized_matmul");
        var a = g.AddInput("a", new TensorTypeInfo(DataType.Float, aShape.Select(Dim.Known).ToArray()));
        var b = g.AddInput("b", new TensorTypeInfo(DataType.Float, bShape.Select(Dim.Known).ToArray()));
        var y = Node(g, NativeOpSchemas.QuantizedMatMul, [a, b], attributes, "product", check);
        g.AddOutput(y);
        return OnnxModelWriter.ToBytes(new Model(g, 8, [new OpsetImport("", 17), new OpsetImport(NativeOps.Domain, 1)]));
    }

    private static IEnumerable<AttributeValue> Attributes(UniformQuantizer a, UniformQuantizer b) =>
        [.. LowerActivationProducts.OperandAttributes("a", a), .. LowerActivationProducts.OperandAttributes("b", b)];

    private static float[] Run(byte[] model, float[] a, long[] aShape, float[] b, long[] bShape) => RunModel(model, ("a", a, aShape), ("b", b, bShape));

    private static float[] Reference(float[] a, long[] aShape, float[] b, long[] bShape, FittedQuantizer qa, FittedQuantizer qb)
    {
        var (xa, xb) = ((float[])a.Clone(), (float[])b.Clone());
        qa.Simulate(xa, aShape);
        qb.Simulate(xb, bShape);
        int m = (int)aShape[^2], k = (int)aShape[^1], n = (int)bShape[^1], slices = a.Length / (m * k);
        var y = new float[slices * m * n];
        for (int s = 0; s < slices; s++)
            for (int r = 0; r < m; r++)
                for (int c = 0; c < n; c++)
                {
                    double acc = 0;
                    for (int i = 0; i < k; i++) acc += (double)xa[(s * m + r) * k + i] * xb[(s * k + i) * n + c];
                    y[(s * m + r) * n + c] = (float)acc;
                }
        return y;
    }

    public static IEnumerable<TestCaseData> Shapes()
    {
        foreach (var path in SupportedPaths())
            foreach (var (a, b) in new (long[], long[])[]
                     {
                         ([1, 1, 5], [1, 5, 3]),             // one row, K and N below the vector widths
                         ([2, 3, 7, 33], [2, 3, 33, 17]),    // rank 4, odd K and N
                         ([13, 20], [20, 9]),                // rank 2, rows not a multiple of the tile
                         ([1, 3, 197, 64], [1, 3, 64, 197]), // DeiT-Tiny Q·Kᵀ
                         ([1, 3, 197, 197], [1, 3, 197, 64]), // DeiT-Tiny softmax·V
                     })
                yield return new TestCaseData(path, a, b).SetArgDisplayNames(path, $"[{string.Join(",", a)}]x[{string.Join(",", b)}]");
    }

    [TestCaseSource(nameof(Shapes))]
    public void MatchesReference(string path, long[] aShape, long[] bShape)
    {
        ForcePath(path);
        var a = TinyModels.Random((int)aShape.Aggregate(1L, (x, y) => x * y), 11, 2f);
        var b = TinyModels.Random((int)bShape.Aggregate(1L, (x, y) => x * y), 12, 2f);
        int k = (int)aShape[^1];
        for (int i = 0; i < k; i++) a[i] = 0.75f; // a constant row
        foreach (var (qa, qb) in new[]
                 {
                     (UniformQuantizer.AsymmetricFromRange(-1.5f, 1.7f, 8), UniformQuantizer.SymmetricFromMaxAbs([1.8f], 8, null)), // clamps beyond the range
                     (UniformQuantizer.AsymmetricFromRange(0f, 1f, 8), UniformQuantizer.AsymmetricFromRange(-2f, 2f, 8)),            // probabilities × values
                     (UniformQuantizer.AsymmetricFromRange(-2f, 1f, 4), UniformQuantizer.SymmetricFromMaxAbs([2f], 5, null)),         // narrow codes
                 })
        {
            var model = Model(aShape, bShape, Attributes(qa, qb));
            AssertClose(Run(model, a, aShape, b, bShape), Reference(a, aShape, b, bShape, qa, qb), $"{qa} × {qb}", 1e-5);
        }
    }

    /// <summary>softmax·V with log2-quantized probabilities (a_kind "log2"): rows of probabilities
    /// with exact zeros and negatives (the zero code), values far below the largest level (levels
    /// past the int16 powers' top, added in float), a constant row; K large enough that the top
    /// is lowered to keep the int32 sums exact.</summary>
    public static IEnumerable<TestCaseData> Log2Shapes()
    {
        foreach (var path in SupportedPaths())
            foreach (var (a, b) in new (long[], long[])[]
                     {
                         ([1, 1, 5], [1, 5, 3]),
                         ([2, 3, 7, 33], [2, 3, 33, 17]),
                         ([1, 3, 197, 197], [1, 3, 197, 64]), // DeiT-Tiny softmax·V
                         ([2, 9, 700], [2, 700, 19]),         // K·2^15·255 ≥ 2^31: a lower top
                     })
                yield return new TestCaseData(path, a, b).SetArgDisplayNames(path, $"[{string.Join(",", a)}]x[{string.Join(",", b)}]");
    }

    [TestCaseSource(nameof(Log2Shapes))]
    public void Log2ProbabilitiesMatchReference(string path, long[] aShape, long[] bShape)
    {
        ForcePath(path);
        int k = (int)aShape[^1];
        var a = TinyModels.Random((int)aShape.Aggregate(1L, (x, y) => x * y), 21, 1f).Select(v => MathF.Abs(v)).ToArray();
        // Spread over many octaves: most values small, as softmax rows are, a few 0 or negative.
        for (int i = 0; i < a.Length; i++) a[i] = i % 13 == 0 ? 0f : i % 29 == 0 ? -0.1f : MathF.Pow(a[i], 1 + i % 7) * 0.5f;
        for (int i = 0; i < k; i++) a[i] = 0.125f; // a constant row
        var b = TinyModels.Random((int)bShape.Aggregate(1L, (x, y) => x * y), 22, 2f);
        var qb = UniformQuantizer.AsymmetricFromRange(-2f, 2f, 8);
        foreach (int bits in new[] { 8, 4, 3 })
        {
            var qa = new LogQuantizer("log2", bits, 1, 0.5f);
            var model = Model(aShape, bShape, [.. LowerActivationProducts.Log2OperandAttributes((Log2Form)qa.NativeForm!), .. LowerActivationProducts.OperandAttributes("b", qb)]);
            AssertClose(Run(model, a, aShape, b, bShape), Reference(a, aShape, b, bShape, qa, qb), $"log2 {bits}-bit × {qb}", 1e-5);
        }
    }

    [Test]
    public void BadLog2AttributesAreAnError()
    {
        var qb = UniformQuantizer.AsymmetricFromRange(-1f, 1f, 8);
        byte[] With(params AttributeValue[] a) => Model([4, 8], [8, 5], [.. a, .. LowerActivationProducts.OperandAttributes("b", qb)], check: false);
        var e = Assert.Throws<OnnxRuntimeException>(() => Run(With(AttributeValue.String("a_kind", "log2"), AttributeValue.Float("a_scale", 1f)), new float[32], [4, 8], new float[40], [8, 5]))!;
        Assert.That(e.Message, Does.Contain("QuantizedMatMul 'product'").And.Contain("attribute 'a_bits' is missing"));
        e = Assert.Throws<OnnxRuntimeException>(() => Run(With(AttributeValue.String("a_kind", "log2"), AttributeValue.Float("a_scale", 1f), AttributeValue.Int("a_bits", 9)), new float[32], [4, 8], new float[40], [8, 5]))!;
        Assert.That(e.Message, Does.Contain("attribute 'a_bits' must be 2..8, not 9"));
        e = Assert.Throws<OnnxRuntimeException>(() => Run(With(AttributeValue.String("a_kind", "tan")), new float[32], [4, 8], new float[40], [8, 5]))!;
        Assert.That(e.Message, Does.Contain("'a_kind' must be 'uniform' or 'log2', not 'tan'"));
    }

    /// <summary>Leading axes broadcast as MatMul's do: the reference runs on the operands expanded
    /// to the output's leading shape.</summary>
    [TestCase(new long[] { 2, 3, 4, 8 }, new long[] { 3, 8, 5 })]
    [TestCase(new long[] { 1, 4, 8 }, new long[] { 2, 8, 5 })]
    [TestCase(new long[] { 2, 1, 4, 8 }, new long[] { 1, 3, 8, 5 })]
    public void LeadingAxesBroadcast(long[] aShape, long[] bShape)
    {
        var a = TinyModels.Random((int)aShape.Aggregate(1L, (x, y) => x * y), 13, 2f);
        var b = TinyModels.Random((int)bShape.Aggregate(1L, (x, y) => x * y), 14, 2f);
        var (qa, qb) = (UniformQuantizer.AsymmetricFromRange(-1.5f, 1.7f, 8), UniformQuantizer.SymmetricFromMaxAbs([1.8f], 8, null));
        int lead = Math.Max(aShape.Length, bShape.Length) - 2;
        long[] Padded(long[] s) => [.. Enumerable.Repeat(1L, lead - (s.Length - 2)), .. s[..^2]];
        var (la, lb) = (Padded(aShape), Padded(bShape));
        var outLead = la.Zip(lb, Math.Max).ToArray();
        float[] Expand(float[] x, long[] have, long[] matrix)
        {
            long size = matrix[0] * matrix[1], slices = outLead.Aggregate(1L, (p, q) => p * q);
            var y = new float[slices * size];
            for (long s = 0; s < slices; s++)
            {
                long rest = s, from = 0, stride = 1;
                for (int i = lead - 1; i >= 0; i--)
                {
                    long coord = rest % outLead[i];
                    rest /= outLead[i];
                    if (have[i] != 1) from += coord * stride;
                    stride *= have[i];
                }
                Array.Copy(x, from * size, y, s * size, size);
            }
            return y;
        }
        var ea = Expand(a, la, aShape[^2..]);
        var eb = Expand(b, lb, bShape[^2..]);
        var model = Model(aShape, bShape, Attributes(qa, qb));
        AssertClose(Run(model, a, aShape, b, bShape), Reference(ea, [.. outLead, .. aShape[^2..]], eb, [.. outLead, .. bShape[^2..]], qa, qb), "broadcast", 1e-5);
    }

    [Test]
    public void MismatchedShapesAreAnError()
    {
        var q = UniformQuantizer.AsymmetricFromRange(-1f, 1f, 8);
        var model = Model([2, 4, 8], [2, 7, 5], Attributes(q, q));
        var e = Assert.Throws<OnnxRuntimeException>(() => Run(model, new float[64], [2, 4, 8], new float[70], [2, 7, 5]))!;
        Assert.That(e.Message, Does.Contain("QuantizedMatMul 'product'").And.Contain("[2,4,8]").And.Contain("[..., M, K] and [..., K, N]"));
        var leading = Model([2, 4, 8], [3, 8, 5], Attributes(q, q));
        e = Assert.Throws<OnnxRuntimeException>(() => Run(leading, new float[64], [2, 4, 8], new float[120], [3, 8, 5]))!;
        Assert.That(e.Message, Does.Contain("leading axes do not broadcast"));
    }

    [Test]
    public void BadAttributesAreAnError()
    {
        var q = UniformQuantizer.AsymmetricFromRange(-1f, 1f, 8);
        var missing = Model([4, 8], [8, 5], LowerActivationProducts.OperandAttributes("a", q), check: false);
        var e = Assert.Throws<OnnxRuntimeException>(() => Run(missing, new float[32], [4, 8], new float[40], [8, 5]))!;
        Assert.That(e.Message, Does.Contain("attribute 'b_scale' is missing"));
        var wide = Model([4, 8], [8, 5], [.. LowerActivationProducts.OperandAttributes("a", q), AttributeValue.Float("b_scale", 0.1f),
            AttributeValue.Int("b_zero_point", 0), AttributeValue.Int("b_qmin", -300), AttributeValue.Int("b_qmax", 300)], check: false);
        e = Assert.Throws<OnnxRuntimeException>(() => Run(wide, new float[32], [4, 8], new float[40], [8, 5]))!;
        Assert.That(e.Message, Does.Contain("at most 256 levels"));
    }
}
