using OnnxViTQ.Observers;

namespace OnnxViTQ.Quantization;

/// <summary>
/// How an activation's clipping range is chosen from calibration statistics — the option
/// <c>range</c> shared by the quantizers with a range: <c>minmax</c> (observed extremes),
/// <c>percentile</c> (the <c>percentile</c>-th and (100 − p)-th percentiles of the calibration
/// histogram), <c>mse</c> (the range minimising the squared quantization error over the
/// histogram, searched among percentile pairs).
/// </summary>
internal static class ActivationRange
{
    public static QuantizerOption RangeOption { get; } =
        QuantizerOption.Choice("range", "activation range: minmax, percentile or mse (least squared error over the calibration histogram)", "minmax", "percentile", "mse");

    public static QuantizerOption PercentileOption { get; } =
        QuantizerOption.Number("percentile", "percentile per side for range=percentile", 99.99, 50.0001, 100);

    public static ObserverRequest Request(QuantizationSite site, QuantizerSpec spec) => spec.Option("range") == "minmax"
        ? new ObserverRequest(ObserverKeys.MinMax, () => new MinMaxObserver(site.Name))
        : new ObserverRequest(ObserverKeys.Histogram, () => new HistogramObserver(tensor: site.Name));

    /// <summary>The range for <paramref name="site"/> under its spec; <paramref name="errorOf"/>
    /// gives a candidate range's error for range=mse (the quantizer's own error function).</summary>
    public static (float Min, float Max) Estimate(QuantizationSite site, QuantizerSpec spec, FitContext context,
        Func<float, float, Func<double, double>>? errorOf = null)
    {
        switch (spec.Option("range"))
        {
            case "minmax":
            {
                var o = context.Observer<MinMaxObserver>(site, ObserverKeys.MinMax);
                if (o.Count == 0) throw new OnnxViTQException($"activation '{site.Name}' saw no calibration data");
                return (o.Min, o.Max);
            }
            case "percentile":
            {
                var h = context.Observer<HistogramObserver>(site, ObserverKeys.Histogram);
                double q = spec.Number("percentile") / 100;
                return (h.Quantile(1 - q), h.Quantile(q));
            }
            default:
            {
                var h = context.Observer<HistogramObserver>(site, ObserverKeys.Histogram);
                return SearchMse(h, errorOf ?? UniformError(spec.Bits));
            }
        }
    }

    /// <summary>Squared-error function of an asymmetric uniform quantizer over [min, max].</summary>
    public static Func<float, float, Func<double, double>> UniformError(int bits) => (lo, hi) =>
    {
        var q = UniformQuantizer.AsymmetricFromRange(lo, hi, bits);
        return x => { double d = x - q.Dequantize(q.Quantize((float)x)); return d * d; };
    };

    /// <summary>Σ count·err(bin centre) over a calibration histogram: the squared quantization
    /// error of a candidate, up to the spread inside bins.</summary>
    public static double HistogramError(HistogramObserver h, Func<double, double> squaredError)
    {
        double total = 0;
        for (int i = 0; i < h.Bins; i++)
            if (h[i] > 0) total += h[i] * squaredError(Math.Clamp(h.Center(i), h.Min, h.Max));
        return total;
    }

    /// <summary>The (min, max) among percentile pairs that minimises Σ count·err(bin centre).</summary>
    public static (float Min, float Max) SearchMse(HistogramObserver h, Func<float, float, Func<double, double>> errorOf)
    {
        if (h.Count == 0) throw new InvalidOperationException("no data observed");
        var tails = new List<double> { 0 };
        for (double e = 1.5; e <= 7.01; e += 0.25) tails.Add(Math.Pow(10, -e));
        var los = tails.Select(t => h.Quantile(t)).Distinct().ToList();
        var his = tails.Select(t => h.Quantile(1 - t)).Distinct().ToList();
        // Only occupied bins matter; gathering them once makes each candidate cheap.
        var centres = new List<(double X, long N)>();
        for (int i = 0; i < h.Bins; i++) if (h[i] > 0) centres.Add((Math.Clamp(h.Center(i), h.Min, h.Max), h[i]));
        (float, float) best = (h.Min, h.Max);
        double bestError = double.PositiveInfinity;
        foreach (float lo in los)
            foreach (float hi in his)
            {
                if (hi < lo) continue;
                var err = errorOf(lo, hi);
                double total = 0;
                foreach (var (x, n) in centres)
                {
                    total += n * err(x);
                    if (total >= bestError) break;
                }
                if (total < bestError) { bestError = total; best = (lo, hi); }
            }
        return best;
    }
}
