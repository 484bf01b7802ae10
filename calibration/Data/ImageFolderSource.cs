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

    /// <summary>Largest width or height decoded, and largest pixel count: the header's claim is
    /// checked before the decoder allocates for it (an 8-byte-header PNG can ask for 2^62 pixels).</summary>
    public const int MaxSide = 1 << 15;
    public const long MaxPixels = 1L << 27;

    /// <summary>The image at <paramref name="path"/> as RGB bytes; a file the decoder cannot read, or
    /// one whose header claims more than <see cref="MaxSide"/>/<see cref="MaxPixels"/>, is bad input.</summary>
    public static ImageResult Decode(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            var info = ImageInfo.FromStream(stream)
                ?? throw new OnnxViTQException($"cannot decode image '{path}': not a PNG, JPEG or BMP file the decoder recognises");
            if (info.Width is < 1 or > MaxSide || info.Height is < 1 or > MaxSide || (long)info.Width * info.Height > MaxPixels)
                throw new OnnxViTQException($"image '{path}' is {info.Width}×{info.Height}; images up to {MaxSide} pixels a side and {MaxPixels} pixels in all are read");
            stream.Position = 0;
            return ImageResult.FromStream(stream, ColorComponents.RedGreenBlue);
        }
        catch (OnnxViTQException) { throw; }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The decoder reports a corrupt file with plain exceptions of several types; to the user
            // every one of them is the same bad input.
            throw new OnnxViTQException($"cannot decode image '{path}': {e.Message}", e);
        }
    }

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
                var image = Decode(path);
                _pre.Apply(image.Data, image.Height, image.Width, 3, data.AsSpan(i * sample, sample));
            }
            yield return new SampleBatch(data, n, SampleShape);
        }
    }
}
