namespace OnnxViTQ.Observers;

/// <summary>
/// A uniform random sample of up to <see cref="Capacity"/> rows of the last dimension (tokens of
/// [.., tokens, channels], attention rows of [.., heads, tokens, tokens]) over all calibration
/// batches — reservoir sampling, so memory is fixed whatever the number of samples. Searches
/// (outlier thresholds, step sizes, non-uniform scales) and error measurement run on it.
/// </summary>
internal sealed class RowSampleObserver(int capacity = 512, int seed = 17, string tensor = "activation") : IObserver
{
    private readonly Random _random = new(seed);
    private float[] _rows = [];
    private int _width, _count;
    private long _seen;

    public int Capacity { get; } = capacity > 0 ? capacity : throw new ArgumentOutOfRangeException(nameof(capacity));
    public int Width => _width;
    public int Count => _count;
    public long RowsSeen => _seen;

    /// <summary>The sampled rows, [Count, Width] in C order.</summary>
    public ReadOnlySpan<float> Rows => _rows.AsSpan(0, _count * _width);
    public long[] Shape => [_count, _width];

    public float[] Copy() => Rows.ToArray();

    public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
    {
        if (data.IsEmpty) return;
        Finite.Check(data, tensor);
        int width = checked((int)shape[^1]);
        if (_width == 0)
        {
            _width = width;
            _rows = new float[Capacity * width];
        }
        else if (_width != width)
            throw new OnnxViTQException($"tensor '{tensor}' changed from rows of {_width} to rows of {width} between batches");
        for (int offset = 0; offset + width <= data.Length; offset += width)
        {
            _seen++;
            int slot;
            if (_count < Capacity) slot = _count++;
            else
            {
                long j = _random.NextInt64(_seen);
                if (j >= Capacity) continue;
                slot = (int)j;
            }
            data.Slice(offset, width).CopyTo(_rows.AsSpan(slot * width, width));
        }
    }

    /// <summary>The sample with x' = (x − shift)/scale applied per column (see
    /// <see cref="PerChannelMinMaxObserver.MapChannels"/>).</summary>
    public RowSampleObserver MapChannels(ReadOnlySpan<float> scale, ReadOnlySpan<float> shift)
    {
        var r = new RowSampleObserver(Capacity, seed, tensor) { _width = _width, _count = _count, _seen = _seen, _rows = (float[])_rows.Clone() };
        for (int row = 0; row < _count; row++)
            for (int c = 0; c < _width; c++)
            {
                ref float x = ref r._rows[row * _width + c];
                x = (x - shift[c]) / scale[c];
            }
        return r;
    }
}
