using OnnxViTQ.Ir;
using OnnxViTQ.Observers;

namespace OnnxViTQ.Quantization;

/// <summary>
/// Kind <c>tan</c> — our design of DopQ-ViT's TanQ for post-Softmax values in [0, s] (the exact
/// formula was not reachable; see docs/TANQ.md). A companding quantizer: the value is mapped by
/// a tangent-shaped curve to u ∈ [0, 1], u is quantized uniformly to 2^k levels, and the level is
/// mapped back by the inverse (arctangent) curve:
///   levels  x_j = s·h(j/L),  h(u) = (atan(κ(u − c)) − A₀)/(A₁ − A₀),  A₀ = atan(−κc), A₁ = atan(κ(1 − c)),
///   encode  u = c + tan(A₀ + (x/s)(A₁ − A₀))/κ,  q = clamp(round(u·L), 0, L),  L = 2^k − 1.
/// h is flat at both ends, so levels are dense near 0 and near s (where the few large, important
/// probabilities sit, which log2 resolves only as 1, ½, ¼) and sparse around the centre c;
/// κ sets how strongly. h(0) = 0 exactly, so zero is a level. κ ∈ {0.5 … 64} and c ∈ {¼, ½, ¾}
/// are chosen per site for the least squared error over the calibration histogram.
/// </summary>
internal sealed class TanQuantizerKind : IQuantizerKind
{
    public string Name => "tan";
    public string Description => "tangent-companded levels, dense near 0 and near the maximum (our TanQ for DopQ-ViT, post-Softmax)";
    public QuantizerTarget Target => QuantizerTarget.Activations;
    public IReadOnlyList<QuantizerOption> Options { get; } = [ActivationRange.RangeOption, ActivationRange.PercentileOption];
    public Granularity GranularityOf(QuantizationSite site) => Granularity.PerTensor;

    public IEnumerable<ObserverRequest> Observers(QuantizationSite site) =>
        [new(ObserverKeys.Histogram, () => new HistogramObserver(tensor: site.Name)), ActivationRange.Request(site, site.Spec!)];

    public static readonly float[] Sharpness = [0.5f, 1, 2, 4, 8, 16, 32, 64];
    public static readonly float[] Centres = [0.25f, 0.5f, 0.75f];

    public FittedQuantizer Fit(QuantizationSite site, FitContext context)
    {
        int bits = site.Spec!.Bits;
        var (_, max) = ActivationRange.Estimate(site, site.Spec, context);
        var histogram = context.Observer<HistogramObserver>(site, ObserverKeys.Histogram);
        TanQuantizer? best = null;
        double bestError = double.PositiveInfinity;
        foreach (float kappa in Sharpness)
            foreach (float centre in Centres)
            {
                var q = new TanQuantizer(bits, max, kappa, centre);
                double e = ActivationRange.HistogramError(histogram, x => { double d = x - q.Apply((float)x); return d * d; });
                if (e < bestError) { bestError = e; best = q; }
            }
        return best!;
    }
}

internal sealed class TanQuantizer : ElementwiseQuantizer
{
    private readonly float[] _levels;
    private readonly float _a0, _span;

    public TanQuantizer(int bits, float scale, float kappa, float centre)
    {
        if (bits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(bits));
        if (!float.IsFinite(scale)) throw new OnnxViTQException($"invalid scale {scale}");
        if (!(kappa > 0) || !(centre is > 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(kappa), "κ must be positive and the centre in (0, 1)");
        Bits = bits;
        Scale = Math.Max(scale, UniformQuantizer.MinScale);
        Kappa = kappa;
        Centre = centre;
        _a0 = MathF.Atan(-kappa * centre);
        _span = MathF.Atan(kappa * (1 - centre)) - _a0;
        int top = (1 << bits) - 1;
        _levels = new float[top + 1];
        for (int j = 0; j <= top; j++) _levels[j] = Scale * Math.Clamp((MathF.Atan(kappa * ((float)j / top - centre)) - _a0) / _span, 0, 1);
        _levels[0] = 0; // exact zero (masked attention)
    }

    public override string Kind => "tan";
    public override int Bits { get; }
    public float Scale { get; }
    public float Kappa { get; }
    public float Centre { get; }
    public IReadOnlyList<float> Levels => _levels;
    private int Top => _levels.Length - 1;

    /// <summary>The code of x (the same float operations as the emitted graph).</summary>
    public int Encode(float x)
    {
        float y = Math.Clamp(x / Scale, 0, 1);
        float u = MathF.Tan(y * _span + _a0) / Kappa + Centre;
        return (int)Math.Clamp(MathF.Round(u * Top, MidpointRounding.ToEven), 0, Top);
    }

    public override float Apply(float x) => _levels[Encode(x)];

    public override IReadOnlyDictionary<string, object> Describe() => new Dictionary<string, object>
    {
        ["scale"] = Scale, ["kappa"] = Kappa, ["centre"] = Centre, ["levels"] = Levels,
    };

    /// <summary>y = Clip(x/s, 0, 1); u = Tan(y·(A₁ − A₀) + A₀)/κ + c; q = Clip(Round(u·L), 0, L);
    /// x̂ = Gather(levels, q).</summary>
    public override Value EmitPortable(PortableBuilder b, QuantizationSite site)
    {
        var y = b.Op("Clip", "normalised", b.Op("Div", "scaled", site.Value, b.Scalar("scale", Scale)), b.Scalar("zero", 0f), b.Scalar("one", 1f));
        var angle = b.Op("Add", "angle", b.Op("Mul", "angle_raw", y, b.Scalar("span", _span)), b.Scalar("a0", _a0));
        var u = b.Op("Add", "companded", b.Op("Div", "tan_scaled", b.Op("Tan", "tan", angle), b.Scalar("kappa", Kappa)), b.Scalar("centre", Centre));
        var code = b.Op("Clip", "codes", b.Op("Round", "codes_raw", b.Op("Mul", "codes_scaled", u, b.Scalar("top", Top))), b.Scalar("code_min", 0f), b.Scalar("code_max", Top));
        var index = b.Node("Cast", "code_index", [code], AttributeValue.Int("to", (long)DataType.Int64));
        return b.Node("Gather", "dequantized", [b.Constant("levels", Tensor.FromFloats([_levels.Length], _levels)), index], AttributeValue.Int("axis", 0));
    }
}
