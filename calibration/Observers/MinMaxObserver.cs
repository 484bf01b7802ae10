using System.Numerics.Tensors;

namespace OnnxViTQ.Observers;

/// <summary>Running minimum and maximum over all elements.</summary>
internal sealed class MinMaxObserver(string tensor = "activation") : IObserver, IRangeStatistics
{
    public float Min { get; private set; } = float.PositiveInfinity;
    public float Max { get; private set; } = float.NegativeInfinity;
    public long Count { get; private set; }

    public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
    {
        if (data.IsEmpty) return;
        Finite.Check(data, tensor);
        Min = Math.Min(Min, TensorPrimitives.Min(data));
        Max = Math.Max(Max, TensorPrimitives.Max(data));
        Count += data.Length;
    }

    /// <summary>A range known from elsewhere (e.g. derived from per-channel statistics after an exact rewrite).</summary>
    public static MinMaxObserver FromRange(float min, float max, long count, string tensor) =>
        new(tensor) { Min = min, Max = max, Count = count };
}
