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

    /// <summary>Runs <paramref name="model"/> once on a zero image batch (<paramref name="batch"/>, or the export's
    /// fixed batch) and records the shapes of <paramref name="values"/> (float tensors of the main graph).</summary>
    public static ValueShapes Probe(Model model, IEnumerable<Value> values, string modelName, int batch = 2)
    {
        if (!values.Any(v => v.Producer is not null || v.IsGraphInput)) return new ValueShapes(new Dictionary<Value, long[]>());
        var input = ImageInput.Of(model, modelName);
        batch = input.FixedBatch ?? batch;
        return Run(model, values, [(input.Name, new float[batch * input.Channels * input.Height * input.Width], input.Shape(batch))], modelName);
    }

    /// <summary>Runs <paramref name="model"/> once on <paramref name="feeds"/> (float32 inputs by name) and
    /// records the shapes of <paramref name="values"/>: for graphs whose inputs are not an image, such
    /// as a module cut out of a model.</summary>
    public static ValueShapes Run(Model model, IEnumerable<Value> values, IReadOnlyList<(string Name, float[] Data, long[] Shape)> feeds, string modelName)
    {
        var wanted = values.Distinct().Where(v => v.Producer is not null || v.IsGraphInput).ToList();
        var result = new Dictionary<Value, long[]>();
        if (wanted.Count == 0) return new ValueShapes(result);
        using var session = OrtRuntime.CreateSession(OnnxModelWriter.ToBytes(model, wanted), modelName);
        var inputs = feeds.Select(f => OrtValue.CreateTensorValueFromMemory(f.Data, f.Shape)).ToList();
        using var runOptions = new RunOptions();
        var names = wanted.Select(v => v.Name).ToArray();
        try
        {
            using var outputs = session.Run(runOptions, feeds.Select(f => f.Name).ToArray(), inputs, names);
            for (int i = 0; i < wanted.Count; i++) result[wanted[i]] = outputs[i].GetTensorTypeAndShape().Shape;
        }
        catch (OnnxRuntimeException e)
        {
            throw new OnnxViTQException($"ONNX Runtime failed running '{modelName}' to find tensor shapes: {OrtRuntime.FirstLine(e.Message)}", e);
        }
        finally
        {
            foreach (var x in inputs) x.Dispose();
        }
        return new ValueShapes(result);
    }
}
