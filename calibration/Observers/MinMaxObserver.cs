using System.Numerics.Tensors;

namespace OnnxViTQ.Observers;

/// <summary>Running minimum and maximum over all elements.</summary>
public sealed class MinMaxObserver : IObserver, IRangeStatistics
{
    public float Min { get; private set; } = float.PositiveInfinity;
    public float Max { get; private set; } = float.NegativeInfinity;
    public long Count { get; private set; }

    public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
    {
        if (data.IsEmpty) return;
        float lo = TensorPrimitives.Min(data), hi = TensorPrimitives.Max(data);
        if (float.IsNaN(lo) || float.IsNaN(hi)) throw new OnnxViTQException("calibration produced NaN activations; check the input data and preprocessing");
        Min = Math.Min(Min, lo);
        Max = Math.Max(Max, hi);
        Count += data.Length;
    }
}
