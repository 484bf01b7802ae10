using System.Numerics.Tensors;

namespace OnnxViTQ.Observers;

/// <summary>Minimum, maximum and mean square of every channel of the last dimension (the hidden
/// dimension of transformer activations [.., tokens, channels]) — the input of per-channel
/// schemes such as RepQ-ViT's reparameterization and of channel balancing.</summary>
internal sealed class PerChannelMinMaxObserver(string tensor = "activation") : IObserver
{
    private float[]? _min, _max;
    private double[]? _sumSquares;
    private long _rows;

    public IReadOnlyList<float> Min => _min ?? [];
    public IReadOnlyList<float> Max => _max ?? [];
    public int Channels => _min?.Length ?? 0;
    public long Rows => _rows;

    /// <summary>E[x²] of each channel.</summary>
    public IReadOnlyList<double> MeanSquare => _sumSquares?.Select(s => _rows == 0 ? 0 : s / _rows).ToArray() ?? [];

    public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
    {
        if (data.IsEmpty) return;
        Finite.Check(data, tensor);
        int channels = checked((int)shape[^1]);
        if (_min is null)
        {
            _min = Enumerable.Repeat(float.PositiveInfinity, channels).ToArray();
            _max = Enumerable.Repeat(float.NegativeInfinity, channels).ToArray();
            _sumSquares = new double[channels];
        }
        else if (_min.Length != channels)
            throw new OnnxViTQException($"tensor '{tensor}' changed from {_min.Length} to {channels} channels between batches");
        Span<float> square = channels <= 4096 ? stackalloc float[channels] : new float[channels];
        for (int row = 0; row + channels <= data.Length; row += channels)
        {
            var slice = data.Slice(row, channels);
            TensorPrimitives.Min(slice, _min, _min);
            TensorPrimitives.Max(slice, _max!, _max!);
            TensorPrimitives.Multiply(slice, slice, square);
            for (int c = 0; c < channels; c++) _sumSquares![c] += square[c];
            _rows++;
        }
    }

    /// <summary>The statistics of x' = (x − shift)/scale per channel (an exact rewrite of the
    /// tensor, e.g. a folded LayerNorm affine); scales are positive.</summary>
    public PerChannelMinMaxObserver MapChannels(ReadOnlySpan<float> scale, ReadOnlySpan<float> shift)
    {
        var r = new PerChannelMinMaxObserver(tensor) { _rows = _rows };
        if (_min is null) return r;
        r._min = new float[Channels];
        r._max = new float[Channels];
        r._sumSquares = new double[Channels];
        for (int c = 0; c < Channels; c++)
        {
            r._min[c] = (_min[c] - shift[c]) / scale[c];
            r._max[c] = (_max![c] - shift[c]) / scale[c];
            // E[((x − δ)/r)²] needs E[x], which is not kept; the mean square is only used to weight
            // errors, so it is rescaled and re-centred on the channel's mid-range.
            double mid = (_min[c] + _max[c]) / 2.0;
            double centred = Math.Max(0, _sumSquares![c] / Math.Max(1, _rows) - mid * mid) + (mid - shift[c]) * (mid - shift[c]);
            r._sumSquares[c] = centred / ((double)scale[c] * scale[c]) * _rows;
        }
        return r;
    }
}
