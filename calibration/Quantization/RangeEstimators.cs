using OnnxViTQ.Observers;

namespace OnnxViTQ.Quantization;

/// <summary>Chooses an activation's clipping range from calibration statistics, and says which
/// observer it needs.</summary>
public interface IRangeEstimator
{
    string Name { get; }
    IObserver CreateObserver();
    (float Min, float Max) Estimate(IObserver observer);
}

/// <summary>The observed minimum and maximum.</summary>
public sealed class MinMaxRange : IRangeEstimator
{
    public string Name => "minmax";
    public IObserver CreateObserver() => new MinMaxObserver();

    public (float Min, float Max) Estimate(IObserver observer)
    {
        var s = (IRangeStatistics)observer;
        if (s.Count == 0) throw new InvalidOperationException("no calibration data was observed");
        return (s.Min, s.Max);
    }
}

/// <summary>The <see cref="Percentile"/>-th and (100 − <see cref="Percentile"/>)-th percentiles of
/// the calibration histogram: clips the rare extreme values that would waste levels.</summary>
public sealed class PercentileRange(double percentile) : IRangeEstimator
{
    public double Percentile { get; } = percentile is > 50 and <= 100
        ? percentile
        : throw new OnnxViTQException($"percentile {percentile} must be above 50 and at most 100");

    public string Name => $"percentile {Percentile}";
    public IObserver CreateObserver() => new HistogramObserver();

    public (float Min, float Max) Estimate(IObserver observer)
    {
        var h = (HistogramObserver)observer;
        double q = Percentile / 100.0;
        return (h.Quantile(1 - q), h.Quantile(q));
    }
}
