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
        n <= 0 ? source : new LaterSamples(source, Math.Min(n, source.Count));

    private sealed class LaterSamples(ICalibrationSource inner, int skip) : ICalibrationSource
    {
        public string Name => inner.Name;
        public int Count => inner.Count - skip;
        public IReadOnlyList<int> SampleShape => inner.SampleShape;

        public IEnumerable<SampleBatch> ReadBatches(int batchSize, int maxSamples = int.MaxValue)
        {
            int wanted = Math.Min(maxSamples, Count), sample = SampleShape.Aggregate(1, (a, d) => a * d), seen = 0;
            var pending = new List<float[]>(batchSize);
            foreach (var batch in inner.ReadBatches(batchSize, skip + wanted))
                for (int i = 0; i < batch.Count; i++, seen++)
                {
                    if (seen < skip) continue;
                    pending.Add(batch.Data.AsSpan(i * sample, sample).ToArray());
                    if (pending.Count == batchSize) yield return Flush();
                }
            if (pending.Count > 0) yield return Flush();

            SampleBatch Flush()
            {
                var data = new float[pending.Count * sample];
                for (int j = 0; j < pending.Count; j++) pending[j].CopyTo(data, j * sample);
                var result = new SampleBatch(data, pending.Count, SampleShape);
                pending.Clear();
                return result;
            }
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
