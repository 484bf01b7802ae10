using OnnxViTQ.Ir;
using OnnxViTQ.Observers;

namespace OnnxViTQ.Quantization;

/// <summary>
/// Logarithmic kinds, one mechanism with n levels per factor of two:
/// <list type="bullet">
/// <item><c>log2</c> (n = 1, post-Softmax in ADFQ-ViT): q = round(−log2(x/s)), x̂ = s·2^(−q).</item>
/// <item><c>log-sqrt2</c> (n = 2, RepQ-ViT): q = round(−2·log2(x/s)), dequantized as
/// s·2^(−⌈q/2⌉)·(1 + (√2 − 1)·(q mod 2)) = s·√2^(−q) — twice log2's resolution over half the range;
/// the parity factor is a constant per code, so deployment stays shifts.</item>
/// </list>
/// Codes 0 … 2^k − 2 are levels below s; the last code is exact zero (values whose q would exceed
/// the range, and x ≤ 0). s is the calibration maximum (option <c>range</c>).
/// </summary>
internal sealed class LogQuantizerKind(string name, int stepsPerOctave, string description) : IQuantizerKind
{
    public static LogQuantizerKind Log2 { get; } = new("log2", 1, "powers of two below the calibration maximum, plus zero (ADFQ-ViT, post-Softmax)");
    public static LogQuantizerKind LogSqrt2 { get; } = new("log-sqrt2", 2, "powers of √2 below the calibration maximum, plus zero (RepQ-ViT, post-Softmax)");

    public string Name => name;
    public string Description => description;
    public QuantizerTarget Target => QuantizerTarget.Activations;
    public IReadOnlyList<QuantizerOption> Options { get; } = [ActivationRange.RangeOption, ActivationRange.PercentileOption];
    public Granularity GranularityOf(QuantizationSite site) => Granularity.PerTensor;
    public IEnumerable<ObserverRequest> Observers(QuantizationSite site) => [ActivationRange.Request(site, site.Spec!)];
    public FittedQuantizer Fit(QuantizationSite site, FitContext context) => LogQuantizer.Fit(site, context, stepsPerOctave, Name);
}

/// <summary>Logarithmic quantizer with <see cref="StepsPerOctave"/> levels per factor of two
/// (1: log2, 2: log√2): levels s·2^(−q/n) for codes q = 0 … 2^k − 2, and zero.</summary>
internal sealed class LogQuantizer : ElementwiseQuantizer, INativeActivation
{
    public LogQuantizer(string kind, int bits, int stepsPerOctave, float scale)
    {
        if (bits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(bits));
        Kind = kind;
        Bits = bits;
        StepsPerOctave = stepsPerOctave is 1 or 2 ? stepsPerOctave : throw new ArgumentOutOfRangeException(nameof(stepsPerOctave));
        Scale = float.IsFinite(scale) ? Math.Max(scale, UniformQuantizer.MinScale) : throw new OnnxViTQException($"invalid scale {scale}");
    }

    public override string Kind { get; }
    public override int Bits { get; }
    public int StepsPerOctave { get; }
    public float Scale { get; }

    /// <summary>The code that stands for zero.</summary>
    public int ZeroCode => (1 << Bits) - 1;

    /// <summary>log2 runs natively as powers of two; log√2's parity factor has no native form yet.</summary>
    public NativeActivationForm? NativeForm => StepsPerOctave == 1 ? new Log2Form(Scale, Bits) : null;

    internal static LogQuantizer Fit(QuantizationSite site, FitContext context, int stepsPerOctave, string kind)
    {
        int bits = site.Spec!.Bits;
        var (_, max) = ActivationRange.Estimate(site, site.Spec, context, (_, hi) =>
        {
            var q = new LogQuantizer(kind, bits, stepsPerOctave, hi);
            return x => { double d = x - q.Apply((float)x); return d * d; };
        });
        return new LogQuantizer(kind, bits, stepsPerOctave, max);
    }

    /// <summary>Quantize-dequantize one value (the same float operations as the emitted graph).</summary>
    public override float Apply(float x)
    {
        float e = MathF.Round(-MathF.Log(MathF.Max(x, Tiny) / Scale) * (StepsPerOctave * ShiftLog2Quantizer.Log2Inverse), MidpointRounding.ToEven);
        e = MathF.Max(e, 0);
        return e < ZeroCode ? MathF.Pow(2, -e / StepsPerOctave) * Scale : 0f;
    }

    /// <summary>Stands in for values ≤ 0 in the logarithm; far below every level.</summary>
    private const float Tiny = 1e-30f;

    public override IReadOnlyDictionary<string, object> Describe() => new Dictionary<string, object>
    {
        ["scale"] = Scale, ["steps_per_octave"] = StepsPerOctave, ["zero_code"] = ZeroCode,
    };

    /// <summary>e = Max(Round(−n·Log(Max(x, tiny)/s)/ln 2), 0); x̂ = Where(e &lt; 2^k − 1, 2^(−e/n)·s, 0).</summary>
    public override Value EmitPortable(PortableBuilder b, QuantizationSite site)
    {
        var log = b.Op("Log", "log", b.Op("Div", "normalised", b.Op("Max", "positive", site.Value, b.Scalar("tiny", Tiny)), b.Scalar("scale", Scale)));
        var code = b.Op("Max", "codes", b.Op("Round", "codes_raw", b.Op("Mul", "neg_log", log, b.Scalar("neg_steps_inv_ln2", -(StepsPerOctave * ShiftLog2Quantizer.Log2Inverse)))), b.Scalar("code_min", 0f));
        var exponent = b.Op("Neg", "exponent", StepsPerOctave == 1 ? code : b.Op("Div", "half_codes", code, b.Scalar("steps", StepsPerOctave)));
        var level = b.Op("Mul", "level", b.Op("Pow", "power", b.Scalar("two", 2f), exponent), b.Scalar("scale_out", Scale));
        var inRange = b.Op("Less", "in_range", code, b.Scalar("zero_code", ZeroCode));
        return b.Op("Where", "dequantized", inRange, level, b.Scalar("zero", 0f));
    }
}
