using OnnxViTQ.Data;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ;

/// <summary>User-facing settings of a quantization run.</summary>
public sealed record QuantizationOptions
{
    /// <summary>A built-in recipe name or the path of a recipe file (.json).</summary>
    public string Recipe { get; init; } = "minmax";

    /// <summary>Default bit widths of weights and activations (a recipe may fix some roles' bits).</summary>
    public BitWidths Bits { get; init; } = BitWidths.W8A8;

    /// <summary>When set, the percentile (per side) of every quantizer using <c>range=percentile</c>.</summary>
    public double? Percentile { get; init; }

    /// <summary>Calibration samples used at most.</summary>
    public int CalibrationSamples { get; init; } = 512;

    public int BatchSize { get; init; } = 32;
}

/// <summary>One pass of a recipe with its options.</summary>
public sealed record PassStep(string Name, IReadOnlyDictionary<string, string>? Options = null)
{
    public IReadOnlyDictionary<string, string> OptionValues => Options ?? new Dictionary<string, string>();
    public override string ToString() => OptionValues.Count == 0 ? Name : $"{Name}({string.Join(", ", OptionValues.Select(kv => $"{kv.Key}={kv.Value}"))})";
}

/// <summary>What a recipe's passes are built from: the options, the calibration data, the
/// model's name for messages, and the recipe itself.</summary>
public sealed record RecipeInputs(QuantizationOptions Options, ICalibrationSource Calibration, string ModelName, Recipe Recipe);

/// <summary>
/// A recipe: a named, ordered list of passes with their options, and the quantizer each tensor
/// role gets. Every paper's method is such a composition; built-in recipes and recipe files
/// (<see cref="RecipeFile"/>) are the same thing.
/// </summary>
public sealed record Recipe(string Name, string Description, IReadOnlyList<PassStep> Passes, QuantizerTable Quantizers)
{
    /// <summary>The passes, built and checked: every pass exists and accepts its options, every
    /// quantizer choice is valid for the bit widths.</summary>
    public IReadOnlyList<IPass> Build(QuantizationOptions options, ICalibrationSource calibration, string modelName)
    {
        var table = options.Percentile is { } p ? WithPercentile(Quantizers, p) : Quantizers;
        var recipe = this with { Quantizers = table };
        table.Validate(options.Bits, Name);
        var inputs = new RecipeInputs(options, calibration, modelName, recipe);
        return Passes.Select(step => PassRegistry.Create(step, inputs, Name)).ToList();
    }

    private static QuantizerTable WithPercentile(QuantizerTable t, double percentile)
    {
        QuantizerChoice Apply(QuantizerChoice c) =>
            c.OptionValues.TryGetValue("range", out var r) && r == "percentile"
                ? c with { Options = new Dictionary<string, string>(c.OptionValues) { ["percentile"] = percentile.ToString(System.Globalization.CultureInfo.InvariantCulture) } }
                : c;
        return t with
        {
            Weight = Apply(t.Weight),
            Default = Apply(t.Default),
            Roles = t.Roles.ToDictionary(kv => kv.Key, kv => Apply(kv.Value)),
            Overrides = t.Overrides.ToDictionary(kv => kv.Key, kv => Apply(kv.Value)),
        };
    }
}
