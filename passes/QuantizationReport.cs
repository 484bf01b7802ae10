using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxViTQ.Quantization;

namespace OnnxViTQ;

/// <summary>A machine-readable record of a quantization run: what was quantized and how.</summary>
public static class QuantizationReport
{
    public sealed record TensorEntry(string Tensor, string Role, string Quantizer, int Bits, int? Axis,
        IReadOnlyList<float> Scales, IReadOnlyList<int> ZeroPoints, IReadOnlyList<string> Consumers);

    public sealed record PassEntry(string Pass, double Seconds, bool Modified);

    public sealed record Document(string Model, string Recipe, string Bits, long CalibrationSamples,
        IReadOnlyList<PassEntry> Passes, IReadOnlyList<string> Diagnostics, IReadOnlyList<TensorEntry> Tensors);

    public static Document Build(string modelName, QuantizationOptions options, QuantizationResult result) => new(
        modelName, options.Recipe, options.Bits.ToString(), result.CalibrationSamples,
        result.Timings.Select(t => new PassEntry(t.Pass, Math.Round(t.Elapsed.TotalSeconds, 3), t.Modified)).ToList(),
        result.Diagnostics.Select(d => d.ToString()).ToList(),
        result.Plan.Entries.Select(e => e.Quantizer is UniformQuantizer u
            ? new TensorEntry(e.Value.Name, e.Role.ToString().ToLowerInvariant(), u.Kind, u.Bits, u.Axis, u.Scales, u.ZeroPoints, e.Uses.Select(x => x.Node.Name).ToList())
            : new TensorEntry(e.Value.Name, e.Role.ToString().ToLowerInvariant(), e.Quantizer.Kind, e.Quantizer.Bits, null, [], [], e.Uses.Select(x => x.Node.Name).ToList())).ToList());

    public static void Write(Stream stream, Document document) =>
        JsonSerializer.Serialize(stream, document, new JsonSerializerOptions
        {
            WriteIndented = true,
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        });
}
