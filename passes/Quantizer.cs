using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;
using OnnxViTQ.Passes;

namespace OnnxViTQ;

/// <summary>Outcome of Quantizer.Quantize: the recipe and plan that were applied,
/// per-pass timings and diagnostics.</summary>
internal sealed record QuantizationResult(
    Recipe Recipe, QuantizationPlan Plan, IReadOnlyList<PassTiming> Timings, IReadOnlyList<Diagnostic> Diagnostics, long CalibrationSamples)
{
    /// <summary>Nodes of the emitted graph with at least one quantized input (lowered layers not included).</summary>
    public IReadOnlyList<Node> QuantizedNodes => Plan.QuantizedNodes;

    /// <summary>Linear layers a lowering replaced by integer ops (names of their MatMul/Gemm).</summary>
    public IReadOnlyList<string> LoweredLayers { get; init; } = [];

    /// <summary>Every quantized node: the portable ones and the lowered linear layers.</summary>
    public int QuantizedNodeCount => QuantizedNodes.Count + LoweredLayers.Count;

    public int WeightTensors => Plan.Weights.Count();
    public int ActivationTensors => Plan.Activations.Count();

    /// <summary>Calibration statistics (histograms, per-channel ranges, row samples) as the passes left them.</summary>
    public ActivationStatistics? Statistics { get; init; }

    /// <summary>Output error of each quantized linear layer (empty when the recipe does not measure errors).</summary>
    public IReadOnlyList<LayerOutputError> LayerErrors { get; init; } = [];

    /// <summary>With <c>--max-drop</c>: each fallback step and its measured loss (null otherwise).</summary>
    public FallbackReport? Fallback { get; init; }

    /// <summary>With <c>--recipe auto</c>: the candidates' scores and the choice (null otherwise).</summary>
    public AutoChoice? Auto { get; init; }

    /// <summary>Per-module widths chosen by mixed precision (null without it).</summary>
    public Passes.Search.ModuleBitChoices? ModuleBits { get; init; }

    /// <summary>The same, measured before interval search or bias correction changed anything (empty when neither ran).</summary>
    public IReadOnlyList<LayerOutputError> LayerErrorsBefore { get; init; } = [];
}

/// <summary>The library entry point: quantizes a model in place with a recipe.</summary>
internal static class Quantizer
{
    public const string MetadataKey = "onnxvitq.quantization";

    /// <summary>Quantizes with the recipe <see cref="QuantizationOptions.Recipe"/> names (built-in or file).</summary>
    public static QuantizationResult Quantize(Model model, string modelName, ICalibrationSource calibration, QuantizationOptions options,
        IProgress<ProgressReport>? progress = null, CancellationToken cancel = default, IReadOnlyList<Stage>? goals = null)
    {
        AutoChoice? auto = null;
        var recipeName = options.Recipe;
        if (AutoRecipe.IsAuto(options.Recipe))
        {
            auto = AutoRecipe.Choose(model, modelName, calibration, options, progress, cancel);
            recipeName = auto.Recipe;
            options = options with { Recipe = auto.Recipe, CalibrationSamples = auto.CalibrationSamples };
        }
        var recipe = Recipes.Get(recipeName);
        // The fallback splits the whole source as auto did (the same samples calibrate, the same are held out).
        var result = options.MaxDrop is { } bound
            ? AccuracyFallback.Run(model, modelName, calibration, options, recipe, bound, options.FallbackData, progress, cancel, goals)
            : Quantize(model, modelName, auto is null ? calibration : calibration.Take(auto.CalibrationSamples), options, recipe, progress, cancel, goals);
        return result with { Auto = auto };
    }

    /// <summary>Quantizes with a recipe built in code (e.g. a built-in one with a role's quantizer
    /// replaced). <c>goals</c>: stages the recipe must reach, checked before calibration with the
    /// rest of the order (a file written for users must be emitted; a caller may stop at a plan).</summary>
    public static QuantizationResult Quantize(Model model, string modelName, ICalibrationSource calibration, QuantizationOptions options, Recipe recipe,
        IProgress<ProgressReport>? progress = null, CancellationToken cancel = default, IReadOnlyList<Stage>? goals = null)
    {
        var context = new PassContext { Progress = progress, Cancellation = cancel };
        var manager = new PassManager(recipe.Build(options, calibration, modelName)) { Goals = goals ?? [] };
        IReadOnlyList<PassTiming> timings;
        using (ExecutionDevice.Use(ExecutionDevice.Parse(options.Device))) timings = manager.Run(model, context);
        model.SetMetadata(MetadataKey, $"recipe={recipe.Name};bits={options.Bits}");
        long samples = context.TryGet<ActivationStatistics>(out var stats) ? stats.Samples : 0;
        return new QuantizationResult(recipe, context.Get<QuantizationPlan>(), timings, context.Diagnostics, samples)
        {
            Statistics = stats,
            LayerErrors = context.TryGet<LayerOutputErrors>(out var layers) ? layers.Layers : [],
            ModuleBits = context.TryGet<Passes.Search.ModuleBitChoices>(out var modules) ? modules : null,
            LayerErrorsBefore = context.TryGet<LayerOutputErrorsBefore>(out var before) ? before.Errors.Layers : [],
            LoweredLayers = context.TryGet<Passes.Lowering.LoweredLinearLayers>(out var lowered) ? lowered.Nodes : [],
        };
    }
}
