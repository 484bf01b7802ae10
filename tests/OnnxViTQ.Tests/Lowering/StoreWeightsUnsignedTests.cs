using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Lowering;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Lowering;

/// <summary>
/// ONNX Runtime's u8×s8 kernels and their saturation (x86 without VNNI), the reference execution
/// that sidesteps it, and store-weights-unsigned, which makes the fused kernels exact. The layer:
/// y = DQ(Q(x)) · DQ(W) with unit scales, x = 255 and W = 127 everywhere, so every pair of
/// products is 2·255·127 = 64770 and the exact result is K·255·127.
/// </summary>
public class StoreWeightsUnsignedTests
{
    private const int M = 4, K = 64, N = 16;
    private const float Exact = K * 255f * 127f;

    private static Model QdqLayer(sbyte weightCode, DataType activation = DataType.UInt8, bool dequantizedActivation = true)
    {
        var g = new Graph("layer");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, M, K));
        var one = g.AddInitializer("one", Tensor.FromFloats([], [1f]));
        Value a = x;
        if (dequantizedActivation)
        {
            var zero = g.AddInitializer("x_zero", activation == DataType.UInt8 ? Tensor.From<byte>(DataType.UInt8, [], [0]) : Tensor.From<sbyte>(DataType.Int8, [], [0]));
            var q = g.AddNode("QuantizeLinear", [x, one, zero], ["x_q"]).Output();
            q.Type = TensorTypeInfo.Of(activation, M, K);
            a = g.AddNode("DequantizeLinear", [q, one, zero], ["x_dq"]).Output();
        }
        var w = g.AddInitializer("w_q", Tensor.From<sbyte>(DataType.Int8, [K, N], Enumerable.Repeat(weightCode, K * N).ToArray()));
        var ws = g.AddInitializer("w_scale", Tensor.FromFloats([N], Enumerable.Repeat(1f, N).ToArray()));
        var wz = g.AddInitializer("w_zero", Tensor.From<sbyte>(DataType.Int8, [N], new sbyte[N]));
        var wdq = g.AddNode("DequantizeLinear", [w, ws, wz], ["w_dq"], [AttributeValue.Int("axis", 1)]).Output();
        var y = g.AddNode("MatMul", [a, wdq], ["y"]).Output();
        y.Type = TensorTypeInfo.Of(DataType.Float, M, N);
        g.AddOutput(y);
        return new Model(g, 8, [new OpsetImport("", 17)]);
    }

    private static float[] Run(Model model, QdqExecution qdq, float value = 255f)
    {
        using var session = OrtRuntime.CreateSession(model, "layer", qdq);
        var input = Enumerable.Repeat(value, M * K).ToArray();
        using var x = OrtValue.CreateTensorValueFromMemory(input, [M, K]);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, [session.InputNames[0]], [x], ["y"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    [Test]
    public void ReferenceExecutionIsExactOnEveryCpu()
    {
        Assert.That(Run(QdqLayer(127), QdqExecution.Reference), Is.All.EqualTo(Exact));
    }

    /// <summary>The probe's answer is what a fused QDQ layer does on this CPU.</summary>
    [Test]
    public void FusedKernelsSaturateExactlyWhenTheProbeSaysSo()
    {
        var fused = Run(QdqLayer(127), QdqExecution.Fused);
        TestContext.Out.WriteLine($"u8×s8 saturates here: {OrtInt8Kernels.SaturatesU8S8}; fused y = {fused[0]} (exact {Exact})");
        if (OrtInt8Kernels.SaturatesU8S8) Assert.That(fused, Is.All.EqualTo(K / 2 * (float)short.MaxValue));
        else Assert.That(fused, Is.All.EqualTo(Exact));
    }

    [Test]
    public void UnsignedWeightsMakeTheFusedKernelExact()
    {
        var model = QdqLayer(127);
        var result = new StoreWeightsUnsigned(UnsignedWeightsPolicy.Always).Run(model, new PassContext());
        Assert.That(result.Modified);
        var dq = model.Graph.Nodes.Single(n => n.OpType == "DequantizeLinear" && n.Output().Name == "w_dq");
        Assert.That(dq.Input(0)!.Initializer!.DataType, Is.EqualTo(DataType.UInt8));
        Assert.That(dq.Input(0)!.Initializer!.AsSpan<byte>().ToArray(), Is.All.EqualTo(255));
        Assert.That(dq.Input(2)!.Initializer!.AsSpan<byte>().ToArray(), Is.All.EqualTo(128));
        Assert.That(Run(model, QdqExecution.Fused), Is.All.EqualTo(Exact));
        Assert.That(Run(model, QdqExecution.Reference), Is.All.EqualTo(Exact), "the dequantized weights are unchanged");
    }

    [Test]
    public void LeavesWeightsThatCannotOverflowAndLayersWithoutU8Codes()
    {
        var small = QdqLayer(64);
        Assert.That(new StoreWeightsUnsigned(UnsignedWeightsPolicy.Always).Run(small, new PassContext()).Modified, Is.False, "2·255·64 fits an int16");
        var signedActivations = QdqLayer(127, DataType.Int8);
        Assert.That(new StoreWeightsUnsigned(UnsignedWeightsPolicy.Always).Run(signedActivations, new PassContext()).Modified, Is.False, "s8×s8 kernels are exact");
        var floatActivations = QdqLayer(127, dequantizedActivation: false);
        Assert.That(new StoreWeightsUnsigned(UnsignedWeightsPolicy.Always).Run(floatActivations, new PassContext()).Modified, Is.False, "a float MatMul input: nothing is fused");
        Assert.That(new StoreWeightsUnsigned(UnsignedWeightsPolicy.Never).Run(QdqLayer(127), new PassContext()).Modified, Is.False);
        Assert.That(new StoreWeightsUnsigned().Run(QdqLayer(127), new PassContext()).Modified, Is.EqualTo(OrtInt8Kernels.SaturatesU8S8), "by default only on a saturating CPU");
    }

    [Test]
    public void MatMulIntegerToFloatWeightsBecomeUnsigned()
    {
        var g = new Graph("layer");
        var a = g.AddInput("a", TensorTypeInfo.Of(DataType.UInt8, M, K));
        var b = g.AddInitializer("b", Tensor.From<sbyte>(DataType.Int8, [K, N], Enumerable.Repeat((sbyte)-127, K * N).ToArray()));
        var one = g.AddInitializer("one", Tensor.FromFloats([], [1f]));
        var bs = g.AddInitializer("b_scale", Tensor.FromFloats([N], Enumerable.Repeat(1f, N).ToArray()));
        var az = g.AddInitializer("a_zero", Tensor.From<byte>(DataType.UInt8, [], [0]));
        var bz = g.AddInitializer("b_zero", Tensor.From<sbyte>(DataType.Int8, [N], new sbyte[N]));
        var y = g.AddNode("MatMulIntegerToFloat", [a, b, one, bs, az, bz], ["y"], [], OrtContribLowering.Domain).Output();
        y.Type = TensorTypeInfo.Of(DataType.Float, M, N);
        g.AddOutput(y);
        var model = new Model(g, 8, [new OpsetImport("", 17), new OpsetImport(OrtContribLowering.Domain, 1)]);

        Assert.That(new StoreWeightsUnsigned(UnsignedWeightsPolicy.Always).Run(model, new PassContext()).Modified);
        var node = model.Graph.Nodes.Single();
        Assert.That(node.Input(1)!.Initializer!.AsSpan<byte>().ToArray(), Is.All.EqualTo(1));
        using var session = OrtRuntime.CreateSession(model, "layer", QdqExecution.Fused);
        using var x = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((byte)255, M * K).ToArray(), [M, K]);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, ["a"], [x], ["y"]);
        Assert.That(outputs[0].GetTensorDataAsSpan<float>().ToArray(), Is.All.EqualTo(-Exact));
    }

    [Test]
    public void PairOverflowBound()
    {
        Assert.That(OrtInt8Kernels.PairCanOverflow(255, 64), Is.False);
        Assert.That(OrtInt8Kernels.PairCanOverflow(255, 65), Is.True);
        Assert.That(OrtInt8Kernels.PairCanOverflow(255, -65), Is.True);
        Assert.That(OrtInt8Kernels.PairCanOverflow(63, 127), Is.False, "6-bit activation codes never overflow");
    }

    [Test]
    public void FindsOverflowingWeightsInQuantizedModels()
    {
        Assert.That(OrtInt8Kernels.HasOverflowingInt8Weights(QdqLayer(127)), Is.True);
        Assert.That(OrtInt8Kernels.HasOverflowingInt8Weights(QdqLayer(64)), Is.False);
        Assert.That(OrtInt8Kernels.HasOverflowingInt8Weights(OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"))), Is.False, "an FP32 model");
    }
}
