using OnnxViTQ.Data;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ;

/// <summary>User-facing settings of a quantization run.</summary>
public sealed record QuantizationOptions
{
    /// <summary>A built-in recipe name, <c>auto</c> (each built-in recipe scored on held-out calibration
    /// samples against FP32, the best kept), or the path of a recipe file (.json).</summary>
    public string Recipe { get; init; } = "minmax";

    /// <summary>Default bit widths of weights and activations (a recipe may fix some roles' bits).</summary>
    public BitWidths Bits { get; init; } = BitWidths.W8A8;

    /// <summary>When set, the percentile (per side) of every quantizer using <c>range=percentile</c>.</summary>
    public double? Percentile { get; init; }

    /// <summary>Calibration samples used at most.</summary>
    public int CalibrationSamples { get; init; } = 512;

    /// <summary>Calibration batch size: memory grows with it, not with the sample count.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>What the quantized model is written as (see <see cref="OutputFormat"/>).</summary>
    public OutputFormat Format { get; init; } = OutputFormat.Portable;

    /// <summary>When set, attention and MLP modules get per-module widths under an average (see <see cref="OnnxViTQ.MixedPrecision"/>).</summary>
    public MixedPrecision? MixedPrecision { get; init; }

    /// <summary>Where ONNX Runtime runs calibration, the searches' model runs and evaluation: <c>cpu</c>
    /// (default), <c>cuda</c> or <c>cuda:N</c> (the GPU build, with CUDA 13 and cuDNN installed). The
    /// quantized model is the same file either way, up to the float summation order of the device.</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>With <c>Recipe = "auto"</c>: seconds after which no further recipe is tried (the cheapest go first).</summary>
    public double AutoSeconds { get; init; } = 900;

    /// <summary>With <c>Recipe = "auto"</c>: the built-in recipes to try (default: all, cheapest first).</summary>
    public IReadOnlyList<string>? AutoRecipes { get; init; }

    /// <summary>When set, the most top-1 the quantized model may lose, in points: modules go back to
    /// 8 bits, then to float, most sensitive first, until it holds. Measured against FP32 on
    /// labelled evaluation data when the file API is given some, else as top-1 disagreement with
    /// FP32 on held-out calibration samples.</summary>
    public double? MaxDrop { get; init; }

    /// <summary>Labelled images <see cref="MaxDrop"/> is measured on (set by the file API from its evaluation data).</summary>
    internal AccuracyFallback.LabelledData? FallbackData { get; init; }

    /// <summary>What stays in float: node names, tensor names, op types ("Conv"), modules ("mlp 11",
    /// "head") or <c>re:</c> regular expressions searched in node names (see <c>onnxvitq inspect</c>).
    /// Each must match something of the model.</summary>
    public IReadOnlyList<string> Exclude { get; init; } = [];

    /// <summary>Measure every linear layer's output error for the reports (set when one is written).</summary>
    internal bool MeasureLayerOutputs { get; init; }
}

/// <summary>The form of the quantized model.</summary>
public enum OutputFormat
{
    /// <summary>Standard ONNX (QuantizeLinear/DequantizeLinear and plain ops): runs on any runtime.</summary>
    Portable,

    /// <summary>Linear layers as com.onnxvitq ops (runtime-ops, packed int8/int4 weights); the rest portable.</summary>
    Native,

    /// <summary>Linear layers in whichever form a stock ONNX Runtime runs fastest on this machine,
    /// measured per layer shape: QDQ (fused by ONNX Runtime), com.microsoft.MatMulNBits or
    /// com.microsoft.DynamicQuantizeMatMul; the rest portable.</summary>
    Ort,
}

internal static class OutputFormats
{
    public static OutputFormat Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "portable" => OutputFormat.Portable,
        "native" => OutputFormat.Native,
        "ort" => OutputFormat.Ort,
        _ => throw new OnnxViTQException($"unknown format '{text}'; formats: portable, native, ort"),
    };

    public static string Name(this OutputFormat f) => f.ToString().ToLowerInvariant();

    /// <summary>The lowering pass a format adds before the portable emitter (none for portable).</summary>
    public static string? LoweringPass(this OutputFormat f) => f == OutputFormat.Portable ? null : $"lower-{f.Name()}";
}

/// <summary>One pass of a recipe with its options.</summary>
internal sealed record PassStep(string Name, IReadOnlyDictionary<string, string>? Options = null)
{
    public IReadOnlyDictionary<string, string> OptionValues => Options ?? new Dictionary<string, string>();
    public override string ToString() => OptionValues.Count == 0 ? Name : $"{Name}({string.Join(", ", OptionValues.Select(kv => $"{kv.Key}={kv.Value}"))})";
}

/// <summary>What a recipe's passes are built from: the options, the calibration data, the
/// model's name for messages, and the recipe itself.</summary>
internal sealed record RecipeInputs(QuantizationOptions Options, ICalibrationSource Calibration, string ModelName, Recipe Recipe);

/// <summary>
/// A recipe: a named, ordered list of passes with their options, and the quantizer each tensor
/// role gets. Every paper's method is such a composition; built-in recipes and recipe files
/// (<see cref="RecipeFile"/>) are the same thing. Formats and options add their passes at the
/// declared extension points (<see cref="PassExtensions"/>); <see cref="Removed"/> takes passes
/// out by name, those extensions included.
/// </summary>
internal sealed record Recipe(string Name, string Description, IReadOnlyList<PassStep> Passes, QuantizerTable Quantizers)
{
    /// <summary>Passes taken out of the completed list (e.g. a companion such as fuse-native-attention).</summary>
    public IReadOnlyList<string> Removed { get; init; } = [];

    /// <summary>The passes the options make of this recipe, in order, not yet built.</summary>
    public IReadOnlyList<PassStep> Steps(QuantizationOptions options) => PassExtensions.Complete(Name, Passes, PassExtensions.Of(options), Removed);

    /// <summary>The passes, built and checked: every pass exists and accepts its options, every
    /// quantizer choice is valid for the bit widths.</summary>
    public IReadOnlyList<IPass> Build(QuantizationOptions options, ICalibrationSource calibration, string modelName)
    {
        var table = options.Percentile is { } p ? WithPercentile(Quantizers, p) : Quantizers;
        var recipe = this with { Quantizers = table };
        table.Validate(options.Bits, Name);
        var inputs = new RecipeInputs(options, calibration, modelName, recipe);
        return Steps(options).Select(step => PassRegistry.Create(step, inputs, Name)).ToList();
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
