namespace OnnxViTQ.Observers;

/// <summary>Accumulates statistics of one tensor over calibration batches. State must have a
/// fixed size (independent of how many samples are observed). Observers reject NaN and ±∞
/// (<see cref="Finite"/>) naming the tensor.</summary>
internal interface IObserver
{
    /// <param name="data">The tensor's elements, C order.</param>
    /// <param name="shape">Its shape; the first dimension is the batch.</param>
    void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape);
}

/// <summary>An observer that knows the overall range of what it saw.</summary>
internal interface IRangeStatistics
{
    float Min { get; }
    float Max { get; }
    long Count { get; }
}
