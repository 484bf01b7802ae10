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

    private sealed class FirstSamples(ICalibrationSource inner, int n) : ICalibrationSource
    {
        public string Name => inner.Name;
        public int Count => n;
        public IReadOnlyList<int> SampleShape => inner.SampleShape;
        public IEnumerable<SampleBatch> ReadBatches(int batchSize, int maxSamples = int.MaxValue) => inner.ReadBatches(batchSize, Math.Min(n, maxSamples));
    }
}
