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

    /// <summary>Calibration batch size: memory grows with it, not with the sample count.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>What the quantized model is written as (see <see cref="OutputFormat"/>).</summary>
    public OutputFormat Format { get; init; } = OutputFormat.Portable;

    /// <summary>When set, attention and MLP modules get per-module widths under an average (see <see cref="OnnxViTQ.MixedPrecision"/>).</summary>
    public MixedPrecision? MixedPrecision { get; init; }

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
/// (<see cref="RecipeFile"/>) are the same thing.
/// </summary>
internal sealed record Recipe(string Name, string Description, IReadOnlyList<PassStep> Passes, QuantizerTable Quantizers)
{
    /// <summary>The passes, built and checked: every pass exists and accepts its options, every
    /// quantizer choice is valid for the bit widths.</summary>
    public IReadOnlyList<IPass> Build(QuantizationOptions options, ICalibrationSource calibration, string modelName)
    {
        var table = options.Percentile is { } p ? WithPercentile(Quantizers, p) : Quantizers;
        var recipe = this with { Quantizers = table };
        table.Validate(options.Bits, Name);
        var inputs = new RecipeInputs(options, calibration, modelName, recipe);
        return WithLowering(WithMixedPrecision(Passes, options.MixedPrecision), options.Format).Select(step => PassRegistry.Create(step, inputs, Name)).ToList();
    }

    /// <summary>The passes with the format's lowering just before the portable emitter (a recipe
    /// that already names a lowering pass keeps its own). With lower-native, fuse-native-attention
    /// (whole attentions with uniform operands) and then lower-native-products
    /// with left=log2 follow it (the log2 softmax·V products) unless the recipe places them, and
    /// fuse-native-layernorm follows the emitter (LayerNorm into the qkv
    /// and fc1 ops) unless the recipe places them. With lower-ort, store-weights-unsigned
    /// follows the emitter unless the recipe places it, so the QDQ ONNX Runtime fuses stays exact
    /// on a CPU whose u8×s8 kernels saturate.</summary>
    private IReadOnlyList<PassStep> WithLowering(IReadOnlyList<PassStep> passes, OutputFormat format)
    {
        if (format.LoweringPass() is { } lowering && !passes.Any(p => p.Name.StartsWith("lower-", StringComparison.Ordinal)))
        {
            int at = passes.ToList().FindIndex(p => p.Name == "emit-portable");
            if (at < 0) throw new OnnxViTQException($"recipe '{Name}' has no emit-portable pass, so --format {format.Name()} has nowhere to go");
            passes = [.. passes.Take(at), new PassStep(lowering), .. passes.Skip(at)];
        }
        int native = passes.ToList().FindIndex(p => p.Name == "lower-native");
        if (native >= 0 && passes.All(p => p.Name != "lower-native-products"))
            passes = [.. passes.Take(native + 1), new PassStep("lower-native-products", new Dictionary<string, string> { ["left"] = "log2" }), .. passes.Skip(native + 1)];
        if (native >= 0 && passes.All(p => p.Name != "fuse-native-attention"))
            passes = [.. passes.Take(native + 1), new PassStep("fuse-native-attention"), .. passes.Skip(native + 1)];
        int emit = passes.ToList().FindIndex(p => p.Name == "emit-portable");
        if (emit >= 0 && passes.Any(p => p.Name == "lower-native"))
        {
            var fusions = new[] { "fuse-native-layernorm" }.Where(f => passes.All(p => p.Name != f)).Select(f => new PassStep(f));
            passes = [.. passes.Take(emit + 1), .. fusions, .. passes.Skip(emit + 1)];
        }
        if (emit < 0 || passes.All(p => p.Name != "lower-ort") || passes.Any(p => p.Name == "store-weights-unsigned")) return passes;
        return [.. passes.Take(emit + 1), new PassStep("store-weights-unsigned"), .. passes.Skip(emit + 1)];
    }

    /// <summary>The passes with module bit allocation right after calibration (before any
    /// reparameterization or fitting reads the widths); a recipe that names it keeps its own.</summary>
    private IReadOnlyList<PassStep> WithMixedPrecision(IReadOnlyList<PassStep> passes, MixedPrecision? mixed)
    {
        if (mixed is null || passes.Any(p => p.Name == "mixed-precision")) return passes;
        int calibrate = passes.ToList().FindIndex(p => p.Name == "collect-statistics");
        if (calibrate < 0) throw new OnnxViTQException($"recipe '{Name}' has no collect-statistics pass, so mixed precision has no statistics to score modules with");
        var step = new PassStep("mixed-precision", new Dictionary<string, string>
        {
            ["min"] = mixed.MinBits.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["max"] = mixed.MaxBits.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["avg"] = mixed.AverageBits.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        return [.. passes.Take(calibrate + 1), step, .. passes.Skip(calibrate + 1)];
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
