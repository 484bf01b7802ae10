using System.Numerics.Tensors;

namespace OnnxViTQ.Observers;

/// <summary>
/// A streaming histogram with a fixed number of bins over a range that grows as data arrives:
/// when values fall outside, the range doubles (pairs of bins merge) until they fit, so counts
/// are never re-estimated and memory stays fixed. Percentiles interpolate inside a bin; their
/// error is at most one bin width (range / bins).
/// </summary>
internal sealed class HistogramObserver(int bins = 4096, string tensor = "activation") : IObserver, IRangeStatistics
{
    private readonly long[] _counts = bins % 2 == 0 && bins >= 16 ? new long[bins] : throw new ArgumentException("bins must be even and at least 16");
    private double _lo, _width;

    public float Min { get; private set; } = float.PositiveInfinity;
    public float Max { get; private set; } = float.NegativeInfinity;
    public long Count { get; private set; }
    public int Bins => _counts.Length;
    public double BinWidth => _width;
    public double RangeStart => _lo;

    public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
    {
        if (data.IsEmpty) return;
        Finite.Check(data, tensor); // an infinite value would make the range double forever
        float lo = TensorPrimitives.Min(data), hi = TensorPrimitives.Max(data);
        if (Count == 0)
        {
            _lo = lo;
            _width = Math.Max(hi - lo, 1e-12) / _counts.Length * (1 + 1e-9);
        }
        Min = Math.Min(Min, lo);
        Max = Math.Max(Max, hi);
        while (lo < _lo) GrowDown();
        while (hi >= _lo + _width * _counts.Length) GrowUp();
        double inv = 1.0 / _width;
        int last = _counts.Length - 1;
        foreach (float x in data)
            _counts[Math.Min((int)((x - _lo) * inv), last)]++;
        Count += data.Length;
    }

    /// <summary>Double the range upwards, keeping the lower edge: bin i absorbs 2i and 2i+1.</summary>
    private void GrowUp()
    {
        int n = _counts.Length;
        for (int i = 0; i < n / 2; i++) _counts[i] = _counts[2 * i] + _counts[2 * i + 1];
        Array.Clear(_counts, n / 2, n / 2);
        _width *= 2;
    }

    /// <summary>Double the range downwards, keeping the upper edge.</summary>
    private void GrowDown()
    {
        int n = _counts.Length;
        for (int i = n - 1; i >= n / 2; i--) _counts[i] = _counts[2 * i - n] + _counts[2 * i - n + 1];
        Array.Clear(_counts, 0, n / 2);
        _lo -= _width * n;
        _width *= 2;
    }

    /// <summary>Count in bin <paramref name="i"/>, which covers [RangeStart + i·BinWidth, RangeStart + (i+1)·BinWidth).</summary>
    public long this[int i] => _counts[i];

    /// <summary>Centre of bin <paramref name="i"/>.</summary>
    public double Center(int i) => _lo + (i + 0.5) * _width;

    /// <summary>Fraction of the elements below <paramref name="x"/> (interpolated inside a bin).</summary>
    public double Cdf(double x)
    {
        if (Count == 0) throw new InvalidOperationException("no data observed");
        if (x <= Min) return 0;
        if (x > Max) return 1;
        double position = (x - _lo) / _width;
        int bin = Math.Clamp((int)position, 0, _counts.Length - 1);
        long below = 0;
        for (int i = 0; i < bin; i++) below += _counts[i];
        return Math.Clamp((below + _counts[bin] * Math.Clamp(position - bin, 0, 1)) / Count, 0, 1);
    }

    /// <summary>The value below which a fraction <paramref name="q"/> (0..1) of the elements lie.</summary>
    public float Quantile(double q)
    {
        if (Count == 0) throw new InvalidOperationException("no data observed");
        if (q <= 0) return Min;
        if (q >= 1) return Max;
        double target = q * Count;
        long cumulative = 0;
        for (int i = 0; i < _counts.Length; i++)
        {
            if (cumulative + _counts[i] >= target && _counts[i] > 0)
            {
                double within = (target - cumulative) / _counts[i];
                double value = _lo + (i + within) * _width;
                return (float)Math.Clamp(value, Min, Max);
            }
            cumulative += _counts[i];
        }
        return Max;
    }
}
