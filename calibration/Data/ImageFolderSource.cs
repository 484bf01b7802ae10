using StbImageSharp;

namespace OnnxViTQ.Data;

/// <summary>Samples from the PNG/JPEG/BMP images of a folder (recursive, sorted by path),
/// decoded with StbImageSharp and run through <see cref="ImagePreprocessing"/>.</summary>
internal sealed class ImageFolderSource : ICalibrationSource
{
    public static readonly string[] Extensions = [".png", ".jpg", ".jpeg", ".bmp"];

    private readonly List<string> _paths;
    private readonly ImagePreprocessing _pre;

    public ImageFolderSource(string folder, ImagePreprocessing preprocessing)
    {
        Name = folder;
        _pre = preprocessing;
        _paths = FindImages(folder);
        if (_paths.Count == 0)
            throw new OnnxViTQException($"calibration folder '{folder}' contains no images ({string.Join(", ", Extensions)}) or .npy files");
    }

    public static List<string> FindImages(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Where(p => Extensions.Contains(Path.GetExtension(p).ToLowerInvariant()))
            .Order(StringComparer.Ordinal).ToList();

    public string Name { get; }
    public int Count => _paths.Count;
    public IReadOnlyList<int> SampleShape => [_pre.Channels, _pre.Height, _pre.Width];

    public IEnumerable<SampleBatch> ReadBatches(int batchSize, int maxSamples = int.MaxValue)
    {
        int total = Math.Min(_paths.Count, maxSamples);
        int sample = _pre.SampleLength;
        for (int start = 0; start < total; start += batchSize)
        {
            int n = Math.Min(batchSize, total - start);
            var data = new float[n * sample];
            for (int i = 0; i < n; i++)
            {
                string path = _paths[start + i];
                ImageResult image;
                try
                {
                    using var stream = File.OpenRead(path);
                    image = ImageResult.FromStream(stream, ColorComponents.RedGreenBlue);
                }
                catch (Exception e) when (e is InvalidOperationException or IOException or ArgumentException)
                {
                    throw new OnnxViTQException($"cannot decode image '{path}': {e.Message}", e);
                }
                _pre.Apply(image.Data, image.Height, image.Width, 3, data.AsSpan(i * sample, sample));
            }
            yield return new SampleBatch(data, n, SampleShape);
        }
    }
}
