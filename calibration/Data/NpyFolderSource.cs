namespace OnnxViTQ.Data;

/// <summary>Samples from every .npy file of a folder (sorted by name), each holding one sample
/// [C,H,W] or a stack [N,C,H,W] (or uint8 images); files are opened one at a time.</summary>
internal sealed class NpyFolderSource : ICalibrationSource
{
    private readonly List<NpyTensorSource> _files;

    public NpyFolderSource(string folder, ImagePreprocessing? imagePreprocessing)
    {
        Name = folder;
        var paths = Directory.EnumerateFiles(folder, "*.npy", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
        if (paths.Count == 0) throw new OnnxViTQException($"calibration folder '{folder}' contains no .npy files");
        _files = paths.Select(p => new NpyTensorSource(p, imagePreprocessing)).ToList();
        var first = _files[0];
        foreach (var f in _files.Skip(1))
            if (!f.SampleShape.SequenceEqual(first.SampleShape))
                throw new OnnxViTQException($"'{f.Name}' has samples of shape [{string.Join(",", f.SampleShape)}], but '{first.Name}' has [{string.Join(",", first.SampleShape)}]");
        Count = _files.Sum(f => f.Count);
        SampleShape = first.SampleShape;
    }

    public string Name { get; }
    public int Count { get; }
    public IReadOnlyList<int> SampleShape { get; }

    public IEnumerable<SampleBatch> ReadBatches(int batchSize, int maxSamples = int.MaxValue)
    {
        // Re-batch across files so batches are full whatever the per-file sample counts.
        int sample = SampleShape.Aggregate(1, (a, d) => a * d);
        var pending = new List<float[]>();
        int pendingCount = 0, emitted = 0;
        foreach (var file in _files)
        {
            foreach (var b in file.ReadBatches(batchSize, maxSamples - emitted - pendingCount))
            {
                pending.Add(b.Data);
                pendingCount += b.Count;
                while (pendingCount >= batchSize)
                {
                    yield return Take(pending, ref pendingCount, batchSize, sample);
                    emitted += batchSize;
                }
            }
            if (emitted + pendingCount >= maxSamples) break;
        }
        if (pendingCount > 0) yield return Take(pending, ref pendingCount, pendingCount, sample);
    }

    private SampleBatch Take(List<float[]> pending, ref int pendingCount, int n, int sample)
    {
        var data = new float[n * sample];
        int filled = 0;
        while (filled < data.Length)
        {
            var head = pending[0];
            int take = Math.Min(head.Length, data.Length - filled);
            head.AsSpan(0, take).CopyTo(data.AsSpan(filled));
            filled += take;
            if (take == head.Length) pending.RemoveAt(0);
            else pending[0] = head[take..];
        }
        pendingCount -= n;
        return new SampleBatch(data, n, SampleShape);
    }
}
