namespace OnnxViTQ.Data;

/// <summary>
/// Samples from one .npy file: float tensors [N,C,H,W] (or one sample [C,H,W]) used as they are,
/// or 8-bit images [N,H,W] / [N,H,W,C] run through <see cref="ImagePreprocessing"/>.
/// </summary>
internal sealed class NpyTensorSource : ICalibrationSource
{
    private readonly NpyFile _file;
    private readonly ImagePreprocessing? _images;
    private readonly int _count;
    private readonly int[] _sampleShape;
    private readonly int[] _storedShape;

    public NpyTensorSource(string path, ImagePreprocessing? imagePreprocessing)
    {
        _file = NpyFile.Open(path);
        var s = _file.Shape;
        if (_file.DType == NpyDType.UInt8)
        {
            if (imagePreprocessing is null) throw new OnnxViTQException($"'{path}' holds uint8 images, but no image preprocessing was given");
            (_count, _storedShape) = s.Count switch
            {
                3 => ((int)s[0], new[] { (int)s[1], (int)s[2], 1 }),
                4 when s[3] is 1 or 3 or 4 => ((int)s[0], new[] { (int)s[1], (int)s[2], (int)s[3] }),
                _ => throw new OnnxViTQException($"'{path}' holds uint8 data of shape {_file.ShapeText}; images must be [N,H,W] or [N,H,W,C] with C = 1, 3 or 4"),
            };
            _images = imagePreprocessing;
            _sampleShape = [imagePreprocessing.Channels, imagePreprocessing.Height, imagePreprocessing.Width];
        }
        else if (_file.DType is NpyDType.Float32 or NpyDType.Float64)
        {
            (_count, _sampleShape) = s.Count switch
            {
                4 => ((int)s[0], new[] { (int)s[1], (int)s[2], (int)s[3] }),
                3 => (1, new[] { (int)s[0], (int)s[1], (int)s[2] }),
                _ => throw new OnnxViTQException($"'{path}' has shape {_file.ShapeText}; calibration tensors must be float32 [N,C,H,W] or [C,H,W]"),
            };
            _storedShape = _sampleShape;
        }
        else throw new OnnxViTQException($"'{path}' holds {_file.DType} values; expected float32 tensors [N,C,H,W] or uint8 images [N,H,W(,C)]");
        if (_count == 0) throw new OnnxViTQException($"'{path}' contains no samples (shape {_file.ShapeText})");
    }

    public string Name => _file.Path;
    public int Count => _count;
    public IReadOnlyList<int> SampleShape => _sampleShape;

    public IEnumerable<SampleBatch> ReadBatches(int batchSize, int maxSamples = int.MaxValue)
    {
        int total = Math.Min(_count, maxSamples);
        int stored = _storedShape.Aggregate(1, (a, d) => a * d);
        int sample = _sampleShape.Aggregate(1, (a, d) => a * d);
        for (int start = 0; start < total; start += batchSize)
        {
            int n = Math.Min(batchSize, total - start);
            var data = new float[n * sample];
            if (_images is null)
            {
                _file.ReadFloats((long)start * stored, data);
            }
            else
            {
                var pixels = _file.ReadBytes((long)start * stored, n * stored);
                for (int i = 0; i < n; i++)
                    _images.Apply(pixels.AsSpan(i * stored, stored), _storedShape[0], _storedShape[1], _storedShape[2], data.AsSpan(i * sample, sample));
            }
            yield return new SampleBatch(data, n, _sampleShape);
        }
    }
}
