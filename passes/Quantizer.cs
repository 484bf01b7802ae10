using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ;

/// <summary>Outcome of <see cref="Quantizer.Quantize"/>: the plan that was applied, per-pass
/// timings and diagnostics.</summary>
public sealed record QuantizationResult(
    QuantizationPlan Plan, IReadOnlyList<PassTiming> Timings, IReadOnlyList<Diagnostic> Diagnostics, long CalibrationSamples)
{
    /// <summary>Nodes with at least one quantized input.</summary>
    public IReadOnlyList<Node> QuantizedNodes => Plan.Entries.SelectMany(e => e.Uses).Select(u => u.Node).Distinct().ToList();

    public int WeightTensors => Plan.Entries.Count(e => e.Role == TensorRole.Weight);
    public int ActivationTensors => Plan.Entries.Count(e => e.Role == TensorRole.Activation);
}

/// <summary>The library entry point: quantizes a model in place with a recipe.</summary>
public static class Quantizer
{
    public const string MetadataKey = "onnxvitq.quantization";

    public static QuantizationResult Quantize(Model model, string modelName, ICalibrationSource calibration, QuantizationOptions options,
        IProgress<ProgressReport>? progress = null, CancellationToken cancel = default)
    {
        var recipe = Recipes.Get(options.Recipe);
        var context = new PassContext { Progress = progress, Cancellation = cancel };
        var manager = new PassManager(recipe.Build(new RecipeInputs(options, calibration, modelName)));
        var timings = manager.Run(model, context);
        model.SetMetadata(MetadataKey, $"recipe={recipe.Name};bits={options.Bits}");
        long samples = context.TryGet<Passes.ActivationStatistics>(out var stats) ? stats.Samples : 0;
        return new QuantizationResult(context.Get<QuantizationPlan>(), timings, context.Diagnostics, samples);
    }
}
