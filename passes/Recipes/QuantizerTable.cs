using OnnxViTQ.Quantization;

namespace OnnxViTQ;

/// <summary>A quantizer choice as a recipe states it: kind, bit width (null: the run's
/// <c>--bits</c> for weights or activations) and options.</summary>
internal sealed record QuantizerChoice(string Kind, int? Bits = null, IReadOnlyDictionary<string, string>? Options = null)
{
    public IReadOnlyDictionary<string, string> OptionValues => Options ?? new Dictionary<string, string>();

    /// <summary>The override kind <c>float</c>: what it names stays unquantized (an exclusion).</summary>
    public const string Float = "float";

    public bool IsFloat => Kind == Float;

    public QuantizerSpec Resolve(TensorRole role, BitWidths bits, string where) =>
        QuantizerRegistry.Spec(Kind, Bits ?? (role == TensorRole.Weight ? bits.Weights : bits.Activations), role, OptionValues, where);
}

/// <summary>Which quantizer each role gets in a recipe, with a default for activation roles not
/// listed, and per-site overrides keyed by tensor name or by the name of a node reading it.</summary>
internal sealed record QuantizerTable
{
    public QuantizerChoice Weight { get; init; } = new("uniform");
    public QuantizerChoice Default { get; init; } = new("uniform");
    public IReadOnlyDictionary<TensorRole, QuantizerChoice> Roles { get; init; } = new Dictionary<TensorRole, QuantizerChoice>();

    /// <summary>The network's image input: 8-bit uniform whatever the activation bit width, as
    /// post-training quantization usually keeps the first layer's input (the patch-embedding
    /// weights follow the weight bit width). A recipe or file may set the <c>input</c> role.</summary>
    public static QuantizerChoice ImageInput { get; } = new("uniform", Bits: 8);
    public IReadOnlyDictionary<string, QuantizerChoice> Overrides { get; init; } = new Dictionary<string, QuantizerChoice>();

    /// <summary>A depthwise convolution's input: one range per channel (each output channel reads
    /// one input channel, so the scales fold into that channel's requantization; hard-swish
    /// outputs, which cross-layer equalization cannot rescale, differ by 10× across channels).</summary>
    public static QuantizerChoice DepthwiseInput { get; } = new("uniform", Options: new Dictionary<string, string> { ["granularity"] = "channel" });

    public QuantizerChoice For(TensorRole role) =>
        role == TensorRole.Weight ? Weight : Roles.TryGetValue(role, out var c) ? c
        : role switch { TensorRole.Input => ImageInput, TensorRole.DepthwiseInput => DepthwiseInput, _ => Default };

    /// <summary>Every role's choice resolved once, so a bad kind, option or bit width fails
    /// before any model is touched.</summary>
    public void Validate(BitWidths bits, string recipe)
    {
        foreach (var role in TensorRoles.All) For(role).Resolve(role, bits, $"recipe '{recipe}', {role.Name()}");
    }
}
