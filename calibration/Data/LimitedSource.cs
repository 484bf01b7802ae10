namespace OnnxViTQ.Data;

/// <summary>The first <paramref name="limit"/> samples of another source.</summary>
internal sealed class LimitedSource(ICalibrationSource inner, int limit) : ICalibrationSource
{
    public string Name => $"{inner.Name} (first {Count})";
    public int Count { get; } = Math.Min(inner.Count, limit);
    public IReadOnlyList<int> SampleShape => inner.SampleShape;

    public IEnumerable<SampleBatch> ReadBatches(int batchSize, int maxSamples = int.MaxValue) =>
        inner.ReadBatches(batchSize, Math.Min(maxSamples, Count));
}
