namespace OnnxViTQ.Data;

internal static class CalibrationSources
{
    /// <summary>Opens a .npy file, a folder of .npy files, or a folder of images.
    /// <paramref name="imagePreprocessing"/> is used for 8-bit image data.</summary>
    public static ICalibrationSource Open(string path, ImagePreprocessing imagePreprocessing)
    {
        if (File.Exists(path))
        {
            if (Path.GetExtension(path).Equals(".npy", StringComparison.OrdinalIgnoreCase))
                return new NpyTensorSource(path, imagePreprocessing);
            throw new OnnxViTQException($"calibration data '{path}' is not a .npy file or a folder of .npy files or images");
        }
        if (Directory.Exists(path))
        {
            bool hasNpy = Directory.EnumerateFiles(path, "*.npy", SearchOption.AllDirectories).Any();
            return hasNpy ? new NpyFolderSource(path, imagePreprocessing) : new ImageFolderSource(path, imagePreprocessing);
        }
        throw new OnnxViTQException($"calibration data '{path}' does not exist");
    }

    /// <summary>The first <paramref name="n"/> samples of <paramref name="source"/>.</summary>
    public static ICalibrationSource Take(this ICalibrationSource source, int n) =>
        n >= source.Count ? source : new FirstSamples(source, n);

    /// <summary><paramref name="source"/> without its first <paramref name="n"/> samples (read and dropped).</summary>
    public static ICalibrationSource Skip(this ICalibrationSource source, int n) =>
        n <= 0 ? source : new KeptSamples(source, 0, Math.Min(n, source.Count));

    /// <summary><paramref name="source"/> without the <paramref name="count"/> samples from <paramref name="start"/>
    /// (a fold held out: the samples before and after it, in order, re-batched).</summary>
    public static ICalibrationSource Without(this ICalibrationSource source, int start, int count) =>
        count <= 0 || start >= source.Count ? source : new KeptSamples(source, Math.Max(0, start), Math.Min(source.Count, start + count));

    /// <summary><paramref name="first"/>'s samples, then <paramref name="second"/>'s (of the same sample
    /// shape): e.g. calibration samples followed by more unlabelled images for <c>--recipe auto</c> to score on.</summary>
    public static ICalibrationSource Concat(this ICalibrationSource first, ICalibrationSource second)
    {
        if (!first.SampleShape.SequenceEqual(second.SampleShape))
            throw new OnnxViTQException($"'{second.Name}' has samples of shape [{string.Join(",", second.SampleShape)}], '{first.Name}' of [{string.Join(",", first.SampleShape)}]: they cannot be one data set");
        return new Concatenated(first, second);
    }

    /// <summary>The samples outside [<paramref name="dropFrom"/>, <paramref name="dropTo"/>), batched as asked
    /// (a batch may span the gap).</summary>
    private sealed class KeptSamples(ICalibrationSource inner, int dropFrom, int dropTo) : ICalibrationSource
    {
        private readonly int _dropped = Math.Min(dropTo, inner.Count) - dropFrom;
        public string Name => inner.Name;
        public int Count => inner.Count - _dropped;
        public IReadOnlyList<int> SampleShape => inner.SampleShape;

        public IEnumerable<SampleBatch> ReadBatches(int batchSize, int maxSamples = int.MaxValue)
        {
            int wanted = Math.Min(maxSamples, Count);
            // Samples past the gap are only read when some are wanted there.
            int read = wanted <= dropFrom ? wanted : wanted + _dropped;
            return Rebatch(Samples(inner.ReadBatches(batchSize, read)).Where((_, i) => i < dropFrom || i >= dropTo).Take(wanted), batchSize, SampleShape);
        }
    }

    private sealed class Concatenated(ICalibrationSource first, ICalibrationSource second) : ICalibrationSource
    {
        public string Name => $"{first.Name} + {second.Name}";
        public int Count => first.Count + second.Count;
        public IReadOnlyList<int> SampleShape => first.SampleShape;

        public IEnumerable<SampleBatch> ReadBatches(int batchSize, int maxSamples = int.MaxValue)
        {
            int wanted = Math.Min(maxSamples, Count);
            var samples = Samples(first.ReadBatches(batchSize, wanted));
            if (wanted > first.Count) samples = samples.Concat(Samples(second.ReadBatches(batchSize, wanted - first.Count)));
            return Rebatch(samples, batchSize, SampleShape);
        }
    }

    private static IEnumerable<float[]> Samples(IEnumerable<SampleBatch> batches)
    {
        foreach (var batch in batches)
        {
            int sample = batch.Data.Length / Math.Max(1, batch.Count);
            for (int i = 0; i < batch.Count; i++) yield return batch.Data.AsSpan(i * sample, sample).ToArray();
        }
    }

    /// <summary>Samples regrouped into batches of <paramref name="batchSize"/> (the last may be smaller).</summary>
    private static IEnumerable<SampleBatch> Rebatch(IEnumerable<float[]> samples, int batchSize, IReadOnlyList<int> shape)
    {
        var pending = new List<float[]>(batchSize);
        foreach (var s in samples)
        {
            pending.Add(s);
            if (pending.Count == batchSize) yield return Flush();
        }
        if (pending.Count > 0) yield return Flush();

        SampleBatch Flush()
        {
            int sample = pending[0].Length;
            var data = new float[pending.Count * sample];
            for (int j = 0; j < pending.Count; j++) pending[j].CopyTo(data, j * sample);
            var result = new SampleBatch(data, pending.Count, shape);
            pending.Clear();
            return result;
        }
    }

    private sealed class FirstSamples(ICalibrationSource inner, int n) : ICalibrationSource
    {
        public string Name => inner.Name;
        public int Count => n;
        public IReadOnlyList<int> SampleShape => inner.SampleShape;
        public IEnumerable<SampleBatch> ReadBatches(int batchSize, int maxSamples = int.MaxValue) => inner.ReadBatches(batchSize, Math.Min(n, maxSamples));
    }
}
