using OnnxViTQ.Data;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Passes.Canonicalize;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ;

/// <summary>User-facing settings of a quantization run.</summary>
public sealed record QuantizationOptions
{
    public string Recipe { get; init; } = "minmax";
    public BitWidths Bits { get; init; } = BitWidths.W8A8;

    /// <summary>Percentile for the <c>percentile</c> recipe (per side).</summary>
    public double Percentile { get; init; } = 99.99;

    /// <summary>Calibration samples used at most.</summary>
    public int CalibrationSamples { get; init; } = 512;

    public int BatchSize { get; init; } = 32;
}

/// <summary>What a recipe is built from: the options, the calibration data, and the model's
/// name for messages.</summary>
public sealed record RecipeInputs(QuantizationOptions Options, ICalibrationSource Calibration, string ModelName);

/// <summary>A named, ordered list of passes.</summary>
public sealed record Recipe(string Name, string Description, Func<RecipeInputs, IReadOnlyList<IPass>> Build);

public static class Recipes
{
    public static IReadOnlyList<Recipe> All { get; } =
    [
        new("minmax", "weights symmetric per output channel; activations asymmetric per tensor over the calibration min/max",
            r => Uniform(r, new MinMaxRange())),
        new("percentile", "as minmax, but activation ranges clipped at a percentile of the calibration histogram (--percentile, default 99.99)",
            r => Uniform(r, new PercentileRange(r.Options.Percentile))),
    ];

    public static Recipe Get(string name) =>
        All.FirstOrDefault(r => r.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new OnnxViTQException($"unknown recipe '{name}'; available: {string.Join(", ", All.Select(r => r.Name))}");

    /// <summary>The uniform baselines: every MatMul/Gemm input, including both attention matmuls.</summary>
    private static IReadOnlyList<IPass> Uniform(RecipeInputs r, IRangeEstimator estimator) =>
    [
        new RewriteRulesPass("canonicalize", CanonicalizationRules.All), // weights become constants
        new SelectMatMulTargets(),                  // what to quantize; needs canonical weights
        new CollectActivationStatistics(r.Calibration, estimator, r.Options.BatchSize,
            r.Options.CalibrationSamples, r.ModelName),  // needs the targets; runs ONNX Runtime
        new FitUniformQuantizers(r.Options.Bits, estimator), // needs the statistics; makes the plan
        new InsertQdqNodes(),                       // portable emitter: reads the plan, rewrites the graph
        new RemoveUnusedConstants(),                // float weights now unused
    ];
}
