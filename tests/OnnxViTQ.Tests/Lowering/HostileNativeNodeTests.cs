using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Ir;
using OnnxViTQ.Passes.Lowering;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Lowering;

/// <summary>
/// com.onnxvitq nodes crafted to make the kernels' size arithmetic wrap: a model file is untrusted
/// input, and every process that registers the library runs these kernels on whatever it loads.
/// Each such node must be refused with an ONNX Runtime error naming the op, the node and the value
/// (at session creation where the size comes from attributes, at Run where it comes from shapes),
/// on every kernel path, and the process must go on working.
/// </summary>
[NonParallelizable]
public class HostileNativeNodeTests : NativeKernelTest
{
    private static byte[] Linear(long k, long n, long weightBits, int packedBytes, params AttributeValue[] extra)
    {
        var g = new Graph("hostile_linear");
        var x = g.AddInput("x", new TensorTypeInfo(DataType.Float, [Dim.Known(2), Dim.Unknown]));
        var packed = g.AddInitializer("w", Tensor.From<byte>(DataType.UInt8, [packedBytes], new byte[packedBytes]));
        var s = g.AddInitializer("s", Tensor.FromFloats([1], [0.01f]));
        var attributes = new List<AttributeValue>
        {
            AttributeValue.Int("k", k), AttributeValue.Int("n", n), AttributeValue.Int("weight_bits", weightBits),
        };
        attributes.AddRange(extra.Length > 0 ? extra : [AttributeValue.String("activation", "token")]);
        var y = g.AddNode(NativeLinearLowering.OpType, [x, packed, s], ["y"], attributes, NativeOps.Domain, "linear").Output();
        g.AddOutput(y);
        return OnnxModelWriter.ToBytes(new Model(g, 8, [new OpsetImport("", 17), new OpsetImport(NativeOps.Domain, 1)]));
    }

    private static string SessionError(byte[] model)
    {
        using var options = Ort.Options();
        var e = Assert.Throws<OnnxRuntimeException>(() => new InferenceSession(model, options).Dispose())!;
        return e.Message;
    }

    public static IEnumerable<TestCaseData> Paths() => SupportedPaths().Select(p => new TestCaseData(p).SetArgDisplayNames(p));

    /// <summary>The issue's own example: k = 2^60 + 4 made the int8 byte count wrap to 64, so a
    /// 64-byte weight passed the size check and the column sums read 2^60 rows past it.</summary>
    [TestCaseSource(nameof(Paths))]
    public void DepthThatWrapsTheInt8ByteCountIsRefused(string path)
    {
        ForcePath(path);
        long k = (1L << 60) + 4;
        Assert.That(unchecked(((k + 3) / 4) * 64 * 1), Is.EqualTo(64), "the crafted depth wraps the unchecked byte count to 64");
        Assert.That(SessionError(Linear(k, 16, 8, 64)),
            Does.Contain("QuantizedLinear 'linear'").And.Contain($"attribute 'k' must be 1..65536, not {k}"));
    }

    /// <summary>With int4 weights the AVX-512 path unpacked a wrapped number of blocks into a
    /// buffer sized by the same wrapped product: a write past the buffer.</summary>
    [TestCaseSource(nameof(Paths))]
    public void DepthThatWrapsTheInt4ByteCountIsRefused(string path)
    {
        ForcePath(path);
        long k = (1L << 61) + 4;
        Assert.That(unchecked(((k + 3) / 4) * 32), Is.EqualTo(32), "the crafted depth wraps the unchecked int4 byte count to 32");
        Assert.That(SessionError(Linear(k, 16, 4, 32)),
            Does.Contain("QuantizedLinear 'linear'").And.Contain($"attribute 'k' must be 1..65536, not {k}"));
    }

    /// <summary>Columns are bounded too (n ≤ 2^31 − 1, so that with k ≤ 65536 no byte count can
    /// reach 2^63); within the bounds the byte count is computed, not wrapped, and must match.</summary>
    [TestCaseSource(nameof(Paths))]
    public void ColumnsAreBoundedAndTheByteCountMustMatch(string path)
    {
        ForcePath(path);
        Assert.That(SessionError(Linear(4, 1L << 62, 8, 0)),
            Does.Contain("QuantizedLinear 'linear'").And.Contain("attribute 'n' must be 1..2147483647, not 4611686018427387904"));
        Assert.That(SessionError(Linear(65536, (1L << 31) - 1, 8, 64)),
            Does.Contain("QuantizedLinear 'linear'").And.Contain("packed weights have 64 bytes; k=65536, n=2147483647 at 8 bits need 140737488355328"));
    }

    /// <summary>Integer attributes are range-checked as int64 before they are narrowed: 2^32 + 5 is
    /// not the zero point 5.</summary>
    [Test]
    public void IntegersAreCheckedBeforeTheyAreNarrowed()
    {
        long wrapped = (1L << 32) + 5;
        var model = Linear(8, 5, 8, 128, AttributeValue.String("activation", "static"), AttributeValue.Float("activation_scale", 0.1f),
            AttributeValue.Int("activation_zero_point", wrapped));
        Assert.That(SessionError(model), Does.Contain($"attribute 'activation_zero_point' must be 0..255, not {wrapped}"));
        Assert.That(SessionError(Linear(8, 5, (1L << 32) + 8, 128)), Does.Contain("attribute 'weight_bits' must be 4..8"));
        var typed = Linear(8, 5, 8, 128, AttributeValue.String("activation", "token"), AttributeValue.String("activation_bits", "8"));
        Assert.That(SessionError(typed), Does.Contain("attribute 'activation_bits' must be an int"));
    }

    /// <summary>3·heads wrapped for heads near 2^62, and B·heads sized every per-slice buffer.</summary>
    [Test]
    public void AttentionHeadsAreBounded()
    {
        var g = new Graph("hostile_attention");
        var x = g.AddInput("qkv", new TensorTypeInfo(DataType.Float, [Dim.Unknown, Dim.Unknown, Dim.Unknown]));
        var q = UniformQuantizer.AsymmetricFromRange(-1f, 1f, 8);
        List<AttributeValue> attributes =
        [
            AttributeValue.Int("heads", 1L << 62), AttributeValue.String("layout", "tbd"),
            .. LowerActivationProducts.OperandAttributes("q", q), .. LowerActivationProducts.OperandAttributes("k", q),
            .. LowerActivationProducts.OperandAttributes("p", q), .. LowerActivationProducts.OperandAttributes("v", q),
        ];
        var y = g.AddNode(FuseNativeAttention.OpType, [x], ["y"], attributes, NativeOps.Domain, "attention").Output();
        g.AddOutput(y);
        var model = OnnxModelWriter.ToBytes(new Model(g, 8, [new OpsetImport("", 17), new OpsetImport(NativeOps.Domain, 1)]));
        Assert.That(SessionError(model), Does.Contain("QuantizedAttention 'attention'").And.Contain("attribute 'heads' must be 1..4096, not 4611686018427387904"));
    }

    /// <summary>Empty operands can claim any other sizes: A [2^21, 1, 1, 1, 0] and B [1, 2^21, 2^21, 0, 1]
    /// broadcast to 2^63 output slices, which wrapped; the product is checked before anything is
    /// sized by it. An empty input with a plausible output still runs (zeros).</summary>
    [Test]
    public void EmptyOperandsCannotClaimAWrappedOutput()
    {
        var g = new Graph("hostile_matmul");
        var a = g.AddInput("a", new TensorTypeInfo(DataType.Float, Enumerable.Repeat(Dim.Unknown, 5).ToArray()));
        var b = g.AddInput("b", new TensorTypeInfo(DataType.Float, Enumerable.Repeat(Dim.Unknown, 5).ToArray()));
        var q = UniformQuantizer.AsymmetricFromRange(-1f, 1f, 8);
        var y = g.AddNode(LowerActivationProducts.OpType, [a, b], ["y"],
            [.. LowerActivationProducts.OperandAttributes("a", q), .. LowerActivationProducts.OperandAttributes("b", q)], NativeOps.Domain, "product").Output();
        g.AddOutput(y);
        var model = OnnxModelWriter.ToBytes(new Model(g, 8, [new OpsetImport("", 17), new OpsetImport(NativeOps.Domain, 1)]));
        long big = 1L << 21;
        var e = Assert.Throws<OnnxRuntimeException>(() => RunModel(model, ("a", [], [big, 1, 1, 1, 0]), ("b", [], [1, big, big, 0, 1])))!;
        Assert.That(e.Message, Does.Contain("QuantizedMatMul 'product'").And.Contain("does not fit in int64"));
        var zeros = RunModel(model, ("a", [], [2, 1, 1, 3, 0]), ("b", [], [1, 2, 1, 0, 4]));
        Assert.That(zeros, Has.Length.EqualTo(2 * 2 * 3 * 4).And.All.EqualTo(0f));
    }
}
