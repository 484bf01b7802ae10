using OnnxViTQ.Ir;
using OnnxViTQ.Observers;

namespace OnnxViTQ.Quantization;

/// <summary>
/// Kind <c>shift-log2</c> (ADFQ-ViT's SLQ, for post-GELU activations): x' = x − m + ε with m the
/// calibration minimum (GELU's negative dip), q = clamp(round(−log2(x'/s)), 0, 2^k − 1) with
/// s = max(x'), x̂ = s·2^(−q) + m − ε. Levels are dense near the minimum, where post-GELU values
/// crowd, and still reach the long positive tail. ε = 2^(−2^k)·s keeps log2 finite.
/// </summary>
internal sealed class ShiftLog2QuantizerKind : IQuantizerKind
{
    public string Name => "shift-log2";
    public string Description => "log2 levels above the calibration minimum (ADFQ-ViT SLQ, post-GELU)";
    public QuantizerTarget Target => QuantizerTarget.Activations;
    public IReadOnlyList<QuantizerOption> Options { get; } = [ActivationRange.RangeOption, ActivationRange.PercentileOption];
    public Granularity GranularityOf(QuantizationSite site) => Granularity.PerTensor;
    public IEnumerable<ObserverRequest> Observers(QuantizationSite site) => [ActivationRange.Request(site, site.Spec!)];

    public FittedQuantizer Fit(QuantizationSite site, FitContext context)
    {
        int bits = site.Spec!.Bits;
        var (min, max) = ActivationRange.Estimate(site, site.Spec, context, (lo, hi) =>
        {
            var q = ShiftLog2Quantizer.ForRange(lo, hi, bits);
            return x => { double d = x - q.Apply((float)x); return d * d; };
        });
        return ShiftLog2Quantizer.ForRange(min, max, bits);
    }
}

internal sealed class ShiftLog2Quantizer : ElementwiseQuantizer, INativeActivation
{
    private ShiftLog2Quantizer(int bits, float shift, float epsilon, float scale)
    {
        Bits = bits;
        Shift = shift;
        Epsilon = epsilon;
        Scale = scale;
    }

    public override string Kind => "shift-log2";
    public override int Bits { get; }

    /// <summary>m: the minimum values are shifted by (the calibration minimum).</summary>
    public float Shift { get; }
    public float Epsilon { get; }
    /// <summary>s = max − m + ε.</summary>
    public float Scale { get; }
    private int MaxCode => (1 << Bits) - 1;

    public NativeActivationForm NativeForm => new ShiftLog2Form(Scale, Shift - Epsilon, Epsilon, Bits);

    public static ShiftLog2Quantizer ForRange(float min, float max, int bits)
    {
        if (bits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(bits));
        if (!float.IsFinite(min) || !float.IsFinite(max) || min > max) throw new OnnxViTQException($"cannot quantize the range [{min}, {max}]");
        float span = Math.Max(max - min, UniformQuantizer.MinScale);
        float epsilon = span * MathF.Pow(2, -(1 << bits));
        return new ShiftLog2Quantizer(bits, min, epsilon, span + epsilon);
    }

    /// <summary>Quantize-dequantize one value (the same float operations as the emitted graph).</summary>
    public override float Apply(float x)
    {
        float shifted = MathF.Max(x - (Shift - Epsilon), Epsilon);
        float code = Math.Clamp(MathF.Round(-MathF.Log(shifted / Scale) * Log2Inverse, MidpointRounding.ToEven), 0, MaxCode);
        return MathF.Pow(2, -code) * Scale + (Shift - Epsilon);
    }

    internal static readonly float Log2Inverse = 1 / MathF.Log(2);

    public override IReadOnlyDictionary<string, object> Describe() => new Dictionary<string, object>
    {
        ["shift"] = Shift, ["epsilon"] = Epsilon, ["scale"] = Scale,
    };

    /// <summary>x' = Max(x + (ε − m), ε); q = Clip(Round(−Log(x'/s)/ln 2), 0, 2^k − 1); x̂ = 2^(−q)·s + (m − ε).</summary>
    public override Value EmitPortable(PortableBuilder b, QuantizationSite site)
    {
        var shifted = b.Op("Max", "shifted", b.Op("Sub", "shifted_raw", site.Value, b.Scalar("shift_minus_eps", Shift - Epsilon)), b.Scalar("epsilon", Epsilon));
        var log = b.Op("Log", "log", b.Op("Div", "normalised", shifted, b.Scalar("scale", Scale)));
        var code = b.Op("Clip", "codes", b.Op("Round", "codes_raw", b.Op("Mul", "neg_log2", log, b.Scalar("neg_inv_ln2", -Log2Inverse))),
            b.Scalar("code_min", 0f), b.Scalar("code_max", MaxCode));
        var power = b.Op("Pow", "power", b.Scalar("two", 2f), b.Op("Neg", "neg_codes", code));
        return b.Op("Add", "dequantized", b.Op("Mul", "scaled", power, b.Scalar("scale_out", Scale)), b.Scalar("shift_back", Shift - Epsilon));
    }
}
