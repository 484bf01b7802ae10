namespace OnnxViTQ.Quantization;

// What a fitted quantizer can do, stated through small interfaces. Passes ask for these, never for
// a quantizer class or a kind name: a new kind that offers a capability takes part in every pass
// that asks for it (docs/ARCHITECTURE.md has the table of which kinds offer what).

/// <summary>
/// An affine integer grid: codes q = clamp(round(x/s) + z, qmin, qmax), x̂ = s·(q − z), one scale and
/// zero point per tensor (<see cref="Axis"/> null) or per channel along <see cref="Axis"/>. What
/// integer kernels multiply (ONNX Runtime's MatMulIntegerToFloat reads the codes a QuantizeLinear
/// writes); a weight's grid also holds the weight's <see cref="Codes"/>.
/// </summary>
internal interface IIntegerGrid
{
    int Bits { get; }

    /// <summary>Zero point 0 and codes in [−2^(k−1), 2^(k−1) − 1] (int8 storage), else [0, 2^k − 1] (uint8).</summary>
    bool Symmetric { get; }

    /// <summary>The channel axis of per-channel parameters; null for one scale per tensor.</summary>
    int? Axis { get; }

    IReadOnlyList<float> Scales { get; }
    IReadOnlyList<int> ZeroPoints { get; }
    int QMin { get; }
    int QMax { get; }

    /// <summary>Weights: the integer codes (C order); null for activations.</summary>
    IReadOnlyList<int>? Codes { get; }
}

/// <summary>
/// A step searches may move: the same quantizer with every step scaled by m (its representable
/// interval scaled about zero), m = 1 giving the quantizer itself. Liu et al.'s interval search,
/// the PTQ4ViT/AOCQ activation-step stage and the range choice move steps only through this.
/// </summary>
internal interface IAdjustableStep
{
    /// <summary>Activations: the quantizer with its step scaled by <paramref name="m"/>.</summary>
    FittedQuantizer WithStepScaled(float m);

    /// <summary>Weights: the same, with the codes of <paramref name="weights"/> (C order,
    /// <paramref name="shape"/>) rounded again on the scaled grid.</summary>
    FittedQuantizer WithStepScaled(float m, float[] weights, long[] shape);
}

/// <summary>
/// A weight grid whose codes a later pass may choose (AdaRound rounds each weight up or down by
/// what the module's output needs): the same grid with other codes.
/// </summary>
internal interface IChoosableRounding
{
    /// <summary>The same grid with <paramref name="codes"/> (C order, within [QMin, QMax]).</summary>
    FittedQuantizer WithCodes(int[] codes);
}

/// <summary>
/// A quantizer the native runtime (runtime-ops/) can execute on an activation, in one of the forms
/// its ops take (<see cref="NativeActivationForm"/>). The lowerings map forms to op attributes
/// through the ops' declared schemas; a kind that offers no form stays portable with the reason
/// in the report.
/// </summary>
internal interface INativeActivation
{
    /// <summary>The form, or null when this particular fit has none (e.g. a per-channel grid).</summary>
    NativeActivationForm? NativeForm { get; }
}

/// <summary>How the native ops quantize an activation. Each form is what a kernel implements;
/// kinds choose which form their fitted parameters take.</summary>
internal abstract record NativeActivationForm(int Bits);

/// <summary>One static affine grid per tensor: codes clamp(round(x/s) + z, qmin, qmax) in the
/// quantizer's own integer domain (int8 when <paramref name="Symmetric"/>, else uint8).</summary>
internal sealed record StaticGridForm(float Scale, int ZeroPoint, int QMin, int QMax, bool Symmetric, int Bits) : NativeActivationForm(Bits);

/// <summary>An asymmetric grid per token row computed at run time, codes in [0, 2^bits − 1]; values
/// with |x| ≥ <paramref name="OutlierAlpha"/> (when &gt; 0) are left out of the row and multiplied
/// in float (ADFQ-ViT's outlier split).</summary>
internal sealed record TokenGridForm(int Bits, float OutlierAlpha) : NativeActivationForm(Bits);

/// <summary>ADFQ-ViT's Shift-Log2: x̂ = s·2^(−q) + m − ε with q = clamp(round(−log2(max(x − m + ε, ε)/s)), 0, 2^bits − 1);
/// <paramref name="Shift"/> is m − ε.</summary>
internal sealed record ShiftLog2Form(float Scale, float Shift, float Epsilon, int Bits) : NativeActivationForm(Bits);

/// <summary>Powers of two below <paramref name="Scale"/>: x̂ = s·2^(−q), the last code exact zero (the log2 post-Softmax quantizer).</summary>
internal sealed record Log2Form(float Scale, int Bits) : NativeActivationForm(Bits);

/// <summary>
/// A kind whose fitted form can take the per-tensor grid a reparameterization derives for a site
/// (RepQ-ViT's and DopQ-ViT's LayerNorm folds pick the scale and zero point themselves). Kinds
/// without it are fitted again on the reparameterized statistics.
/// </summary>
internal interface IAcceptsDerivedGrid
{
    /// <summary>The site's quantizer on the derived grid <paramref name="grid"/> (per tensor).</summary>
    FittedQuantizer FromDerivedGrid(FittedQuantizer grid, QuantizerSpec spec);
}
