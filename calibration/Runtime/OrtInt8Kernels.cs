using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Ir;
using OnnxViTQ.Patterns;
using OnnxViTQ.Serialization;

namespace OnnxViTQ.Runtime;

/// <summary>
/// How ONNX Runtime runs the QuantizeLinear/DequantizeLinear groups of a quantized model.
/// </summary>
internal enum QdqExecution
{
    /// <summary>As written (<c>session.disable_quant_qdq</c>): every QuantizeLinear and
    /// DequantizeLinear runs, float ops between. This is the file's ONNX meaning, the same on every
    /// CPU up to float summation order — what calibration, plan checks and accuracy figures use.</summary>
    Reference,

    /// <summary>ONNX Runtime's default: QDQ groups fused into its integer kernels, as a deployment
    /// runs the file (on x86 CPUs without VNNI the u8×s8 kernels saturate, see
    /// <see cref="OrtInt8Kernels"/>).</summary>
    Fused,
}

/// <summary>
/// Whether ONNX Runtime's u8×s8 integer kernels are exact on this CPU. On x86 without VNNI, MLAS
/// multiplies u8 activations by s8 weights with <c>vpmaddubsw</c>, which adds each pair of
/// products into a saturating int16: an activation code near 255 next to a weight code near ±127
/// gives 2·255·127 = 64770, clamped to 32767. With VNNI (<c>vpdpbusd</c>), on ARM and for u8×u8
/// the sums are exact. Measured once per process, on ONNX Runtime itself: a MatMulInteger whose
/// every pair of products overflows int16.
/// </summary>
internal static class OrtInt8Kernels
{
    /// <summary>The largest pair sum an int16 holds.</summary>
    public const int PairLimit = short.MaxValue;

    private const int K = 64, N = 16, M = 4;

    private static readonly Lazy<bool> Saturating = new(Probe);

    /// <summary>True when ONNX Runtime's u8×s8 kernels saturate pair sums on this CPU.</summary>
    public static bool SaturatesU8S8 => Saturating.Value;

    /// <summary>One line for reports, or null when the kernels are exact here.</summary>
    public static string? Warning => SaturatesU8S8
        ? "ONNX Runtime's u8×s8 integer kernels saturate on this CPU (x86 without VNNI: int16 pair sums clamp at 32767)"
        : null;

    /// <summary>Whether u8 activation codes up to <paramref name="activationMax"/> times s8 weight
    /// codes up to |<paramref name="weightMax"/>| can overflow a saturating pair sum.</summary>
    public static bool PairCanOverflow(int activationMax, int weightMax) => 2L * activationMax * Math.Abs(weightMax) > PairLimit;

    /// <summary>Whether <paramref name="model"/> has int8 weights that ONNX Runtime multiplies by u8
    /// codes in a u8×s8 kernel and whose codes are large enough to overflow a pair sum: an int8
    /// initializer read by DequantizeLinear (a QDQ weight) or by one of ONNX Runtime's integer ops.</summary>
    public static bool HasOverflowingInt8Weights(Model model)
    {
        foreach (var node in model.Graph.Nodes)
        {
            if (node.IsRemoved) continue;
            int index = node.OpType switch
            {
                "DequantizeLinear" => 0,
                "MatMulInteger" or "MatMulIntegerToFloat" or "ConvInteger" or "DynamicQuantizeMatMul" => 1,
                "QLinearMatMul" or "QLinearConv" => 3,
                _ => -1,
            };
            if (index < 0 || node.Input(index) is not { } v || !Constants.TryGetTensor(v, out var t) || t.DataType != DataType.Int8) continue;
            var codes = t.AsSpan<sbyte>();
            foreach (var c in codes)
                if (PairCanOverflow(byte.MaxValue, c)) return true;
        }
        return false;
    }

    /// <summary>Whether ONNX Runtime's fused execution of <paramref name="model"/> can differ from
    /// running its QDQ as written, and why (empty: it cannot, up to float summation order): u8×s8
    /// saturation on this CPU, and — on every CPU — a constant DequantizeLinear weight read by a
    /// MatMul whose activation is float (a fake-quant subgraph), which ONNX Runtime rewrites into
    /// MatMulNBits; that op quantizes the activation again (int8 per block of K).</summary>
    public static IReadOnlyList<string> FusedExecutionDiffers(Model model)
    {
        var reasons = new List<string>();
        if (SaturatesU8S8 && HasOverflowingInt8Weights(model)) reasons.Add(Warning!);
        foreach (var node in model.Graph.Nodes)
        {
            if (node.IsRemoved || node.OpType != "MatMul" || node.Domain.Length > 0) continue;
            if (node.Input(1)?.Producer is { OpType: "DequantizeLinear" } dq && dq.Input(0) is { } w && Constants.TryGetTensor(w, out _)
                && node.Input(0)?.Producer is not { OpType: "DequantizeLinear" })
            {
                reasons.Add("ONNX Runtime turns a DequantizeLinear weight × float activation MatMul into MatMulNBits, which quantizes the activation again (int8 per block)");
                break;
            }
        }
        return reasons;
    }

    private static bool Probe()
    {
        // y = a·B with every a = 255 and every B = 127: K·255·127 exactly, (K/2)·32767 when saturated.
        var g = new Graph("u8s8_probe");
        var a = g.AddInput("a", TensorTypeInfo.Of(DataType.UInt8, M, K));
        var b = g.AddInitializer("b", Tensor.From<sbyte>(DataType.Int8, [K, N], Enumerable.Repeat((sbyte)127, K * N).ToArray()));
        var y = g.AddNode("MatMulInteger", [a, b], ["y"]).Output();
        y.Type = TensorTypeInfo.Of(DataType.Int32, M, N);
        g.AddOutput(y);
        var bytes = OnnxModelWriter.ToBytes(new Model(g, 8, [new OpsetImport("", 13)]));
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR, IntraOpNumThreads = 1 };
        using var session = new InferenceSession(bytes, options);
        var input = Enumerable.Repeat(byte.MaxValue, M * K).ToArray();
        using var x = OrtValue.CreateTensorValueFromMemory(input, [M, K]);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, ["a"], [x], ["y"]);
        var result = outputs[0].GetTensorDataAsSpan<int>();
        const int exact = K * 255 * 127;
        foreach (var v in result)
            if (v != exact) return true;
        return false;
    }
}
