using System.Globalization;
using OnnxViTQ.Ir;
using OnnxViTQ.Observers;

namespace OnnxViTQ.Quantization;

/// <summary>
/// Kind <c>outlier-split</c> (ADFQ-ViT's per-patch outlier-aware quantizer, POQ): X = M_o + M_no
/// with M_o = X·1(|X| ≥ α) kept in float (a sparse residual: Y = Q(M_no)·W + M_o·W) and M_no
/// quantized per token. α is chosen per site on calibration data: candidates are the |x| levels
/// exceeded by a fraction ρ of the elements (ρ from 0 up to <c>max-outlier-ratio</c>, read off
/// the calibration histogram); each is scored by the squared error of the split quantizer on a
/// sample of calibration rows, and the smallest ρ whose error is within (1 + <c>tolerance</c>) of
/// the best is taken — outliers cost sparse float work, so fewer is better at equal error.
/// <c>alpha</c> &gt; 0 fixes α instead (the paper: 5 for qkv, 10 for fc1 on DeiT-S).
/// </summary>
internal sealed class OutlierSplitQuantizerKind : IQuantizerKind
{
    public string Name => "outlier-split";
    public string Description => "per-token dynamic uniform with |x| ≥ α kept in float as a sparse residual (ADFQ-ViT POQ); α searched on calibration data";
    public QuantizerTarget Target => QuantizerTarget.Activations;

    public IReadOnlyList<QuantizerOption> Options { get; } =
    [
        QuantizerOption.Number("max-outlier-ratio", "largest fraction of elements kept in float", 0.03, 0, 0.5),
        QuantizerOption.Number("tolerance", "take the fewest outliers whose error is within (1 + tolerance) of the best candidate's", 0.25, 0, 10),
        QuantizerOption.Number("alpha", "fixed threshold α (0: search)", 0, 0, 1e9),
    ];

    public Granularity GranularityOf(QuantizationSite site) => Granularity.PerToken;

    public IEnumerable<ObserverRequest> Observers(QuantizationSite site) =>
    [
        new(ObserverKeys.Histogram, () => new HistogramObserver(tensor: site.Name)),
        new(ObserverKeys.Rows, () => new RowSampleObserver(tensor: site.Name)),
    ];

    public static readonly double[] CandidateRatios = [0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 2e-2, 3e-2, 5e-2, 0.1, 0.2, 0.5];

    public FittedQuantizer Fit(QuantizationSite site, FitContext context)
    {
        var spec = site.Spec!;
        var histogram = context.Observer<HistogramObserver>(site, ObserverKeys.Histogram);
        double fixedAlpha = spec.Number("alpha");
        if (fixedAlpha > 0) return new OutlierSplitQuantizer(spec.Bits, (float)fixedAlpha, Tail(histogram, fixedAlpha));
        var rows = context.Observer<RowSampleObserver>(site, ObserverKeys.Rows);
        double maxRatio = spec.Number("max-outlier-ratio"), tolerance = spec.Number("tolerance");
        var candidates = new List<(float Alpha, double Ratio, double Error)>();
        // "No outliers" is a threshold above everything calibration saw.
        float above = 2 * Math.Max(Math.Abs(histogram.Min), Math.Abs(histogram.Max)) + 1;
        foreach (double ratio in CandidateRatios.Where(r => r <= maxRatio))
        {
            float alpha = ratio == 0 ? above : (float)AbsQuantile(histogram, 1 - ratio);
            if (!(alpha > 0) || candidates.Any(c => c.Alpha == alpha)) continue;
            var q = new OutlierSplitQuantizer(spec.Bits, alpha, ratio == 0 ? 0 : Tail(histogram, alpha));
            candidates.Add((alpha, q.OutlierRatio, SquaredError(q, rows)));
        }
        double best = candidates.Min(c => c.Error);
        var chosen = candidates.OrderBy(c => c.Ratio).First(c => c.Error <= (1 + tolerance) * best);
        return new OutlierSplitQuantizer(spec.Bits, chosen.Alpha, chosen.Ratio);
    }

    private static double SquaredError(FittedQuantizer q, RowSampleObserver rows)
    {
        if (rows.Count == 0) return 0;
        var x = rows.Copy();
        q.Simulate(x, rows.Shape);
        double e = 0;
        var original = rows.Rows;
        for (int i = 0; i < x.Length; i++) { double d = x[i] - original[i]; e += d * d; }
        return e;
    }

    /// <summary>Fraction of elements with |x| ≥ a, from the calibration histogram.</summary>
    internal static double Tail(HistogramObserver h, double a) => Math.Clamp(1 - h.Cdf(a) + h.Cdf(-a), 0, 1);

    /// <summary>The a with P(|x| &lt; a) = p (bisection on the histogram's CDF).</summary>
    internal static double AbsQuantile(HistogramObserver h, double p)
    {
        double lo = 0, hi = Math.Max(Math.Abs(h.Min), Math.Abs(h.Max));
        for (int i = 0; i < 60; i++)
        {
            double mid = (lo + hi) / 2;
            if (1 - Tail(h, mid) < p) lo = mid; else hi = mid;
        }
        return hi;
    }
}

/// <summary>Outlier split: x̂ = x where |x| ≥ α, else the per-token quantization of the row with
/// the outliers replaced by 0 (their row range is that of the inliers).</summary>
internal sealed class OutlierSplitQuantizer(int bits, float alpha, double outlierRatio) : FittedQuantizer, INativeActivation
{
    public override string Kind => "outlier-split";
    public override int Bits { get; } = bits is >= 2 and <= 8 ? bits : throw new ArgumentOutOfRangeException(nameof(bits));
    public override Granularity Granularity => Granularity.PerToken;
    public float Alpha { get; } = alpha > 0 && float.IsFinite(alpha) ? alpha : throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must be positive and finite");

    /// <summary>Fraction of calibration elements with |x| ≥ α.</summary>
    public double OutlierRatio { get; } = outlierRatio;

    public NativeActivationForm NativeForm => new TokenGridForm(Bits, Alpha);

    public override void Simulate(Span<float> values, ReadOnlySpan<long> shape)
    {
        Finite.Check(values, "simulated tensor");
        int width = PerTokenQuantizer.RowWidth(values, shape);
        Span<float> inliers = width <= 8192 ? stackalloc float[width] : new float[width];
        for (int at = 0; at < values.Length; at += width)
        {
            var row = values.Slice(at, width);
            for (int i = 0; i < width; i++) inliers[i] = MathF.Abs(row[i]) >= Alpha ? 0f : row[i];
            PerTokenQuantizer.QuantizeRow(inliers, Bits);
            for (int i = 0; i < width; i++) if (MathF.Abs(row[i]) < Alpha) row[i] = inliers[i];
        }
    }

    public override IReadOnlyDictionary<string, object> Describe() => new Dictionary<string, object>
    {
        ["alpha"] = Alpha,
        ["outlier_ratio"] = Math.Round(OutlierRatio, 6),
    };

    /// <summary>mask = |x| ≥ α; inliers = Where(mask, 0, x); x̂ = Where(mask, x, per-token(inliers)).</summary>
    public override Value EmitPortable(PortableBuilder b, QuantizationSite site)
    {
        var x = site.Value;
        var mask = b.Op("GreaterOrEqual", "outlier_mask", b.Op("Abs", "abs", x), b.Scalar("alpha", Alpha));
        var inliers = b.Op("Where", "inliers", mask, b.Scalar("zero_fill", 0f), x);
        var quantized = PerTokenQuantizer.Emit(b, inliers, Bits, "inlier_");
        return b.Op("Where", "dequantized", mask, x, quantized);
    }

    public override string ToString() => $"outlier-split {Bits}-bit α={Alpha.ToString("g4", CultureInfo.InvariantCulture)} ({100 * OutlierRatio:0.###} % outliers)";
}
