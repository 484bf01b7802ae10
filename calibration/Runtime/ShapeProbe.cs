using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Ir;
using OnnxViTQ.Serialization;

namespace OnnxViTQ.Runtime;

/// <summary>Concrete shapes of intermediate tensors, as ONNX Runtime computes them for one input
/// batch (exports from PyTorch carry no value_info, and shapes like Swin's window partition are
/// computed at run time).</summary>
internal sealed class ValueShapes(IReadOnlyDictionary<Value, long[]> shapes)
{
    public bool TryGet(Value v, out long[] shape) => shapes.TryGetValue(v, out shape!);

    public long[] Of(Value v) => shapes.TryGetValue(v, out var s) ? s : throw new InvalidOperationException($"no probed shape for '{v.Name}'");

    /// <summary>Runs <paramref name="model"/> once on a zero image batch (batch 2, or the export's
    /// fixed batch) and records the shapes of <paramref name="values"/> (float tensors of the main graph).</summary>
    public static ValueShapes Probe(Model model, IEnumerable<Value> values, string modelName)
    {
        var wanted = values.Distinct().Where(v => v.Producer is not null || v.IsGraphInput).ToList();
        var input = ImageInput.Of(model, modelName);
        var result = new Dictionary<Value, long[]>();
        if (wanted.Count == 0) return new ValueShapes(result);
        using var session = OrtRuntime.CreateSession(OnnxModelWriter.ToBytes(model, wanted), modelName);
        int batch = input.FixedBatch ?? 2;
        var data = new float[batch * input.Channels * input.Height * input.Width];
        using var x = OrtValue.CreateTensorValueFromMemory(data, input.Shape(batch));
        using var runOptions = new RunOptions();
        var names = wanted.Select(v => v.Name).ToArray();
        try
        {
            using var outputs = session.Run(runOptions, [input.Name], [x], names);
            for (int i = 0; i < wanted.Count; i++) result[wanted[i]] = outputs[i].GetTensorTypeAndShape().Shape;
        }
        catch (OnnxRuntimeException e)
        {
            throw new OnnxViTQException($"ONNX Runtime failed running '{modelName}' to find tensor shapes: {OrtRuntime.FirstLine(e.Message)}", e);
        }
        return new ValueShapes(result);
    }
}
