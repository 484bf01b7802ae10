using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Serialization;

namespace OnnxViTQ.Tests.Support;

/// <summary>Runs models through ONNX Runtime for numeric comparisons in tests.</summary>
internal static class Ort
{
    /// <summary>All outputs of the model for one input, as float arrays (by output order).</summary>
    public static float[][] Run(byte[] model, string inputName, float[] input, long[] shape, string[]? outputs = null)
    {
        using var options = Options();
        using var session = new InferenceSession(model, options);
        return Run(session, inputName, input, shape, outputs);
    }

    /// <summary>Outputs with their shapes (float outputs only).</summary>
    public static (float[] Data, long[] Shape)[] RunWithShapes(byte[] model, string inputName, float[] input, long[] shape, string[] outputs)
    {
        using var options = Options();
        using var session = new InferenceSession(model, options);
        using var x = OrtValue.CreateTensorValueFromMemory(input, shape);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, [inputName], [x], outputs);
        return results.Select(r => (r.GetTensorDataAsSpan<float>().ToArray(), r.GetTensorTypeAndShape().Shape)).ToArray();
    }

    public static float[][] RunFile(string modelPath, string inputName, float[] input, long[] shape)
    {
        using var options = Options();
        using var session = new InferenceSession(modelPath, options);
        return Run(session, inputName, input, shape, null);
    }

    /// <summary>No graph optimisation (tests compare the graph as written); the native ops registered when built.</summary>
    public static SessionOptions Options()
    {
        var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        OnnxViTQ.Runtime.NativeOps.RegisterIfAvailable(options);
        return options;
    }

    private static float[][] Run(InferenceSession session, string inputName, float[] input, long[] shape, string[]? outputs)
    {
        outputs ??= session.OutputNames.ToArray();
        using var x = OrtValue.CreateTensorValueFromMemory(input, shape);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, [inputName], [x], outputs);
        return results.Select(r => r.GetTensorTypeAndShape().ElementDataType == Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float
            ? r.GetTensorDataAsSpan<float>().ToArray()
            : r.GetTensorDataAsSpan<byte>().ToArray().Select(b => (float)b).ToArray()).ToArray();
    }

    public static byte[] Bytes(Model model, IEnumerable<Value>? extraOutputs = null) => OnnxModelWriter.ToBytes(model, extraOutputs);

    /// <summary>The first <paramref name="n"/> calibration samples, [n,3,28,28].</summary>
    public static (float[] Data, long[] Shape) CalibrationSamples(int n)
    {
        var data = new float[n * 3 * 28 * 28];
        NpyFile.Open(Repo.Calibration).ReadFloats(0, data);
        return (data, [n, 3, 28, 28]);
    }
}
