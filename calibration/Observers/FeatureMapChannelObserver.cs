using System.Numerics.Tensors;

namespace OnnxViTQ.Observers;

/// <summary>
/// Minimum and maximum of every channel of a feature map [N, C, …] (axis 1, the channel axis of
/// convolution inputs), plus the first <see cref="SampleLimit"/> samples kept whole so the fitted
/// per-channel quantizer's error can be measured on them. Fixed size.
/// </summary>
internal sealed class FeatureMapChannelObserver(string tensor = "activation") : IObserver
{
    public const int SampleLimit = 4;

    private float[]? _min, _max;
    private double[]? _sum;
    private readonly List<float> _sample = [];
    private long[]? _sampleShape;
    private int _sampled;

    public IReadOnlyList<float> Min => _min ?? [];
    public IReadOnlyList<float> Max => _max ?? [];

    /// <summary>E[x] of every channel.</summary>
    public IReadOnlyList<double> Mean => _sum is null || Count == 0 ? [] : _sum.Select(s => s / (Count / _sum.Length)).ToArray();
    public int Channels => _min?.Length ?? 0;
    public long Count { get; private set; }

    /// <summary>The kept samples, [n, C, rest] in C order (empty before any batch).</summary>
    public (float[] Data, long[] Shape) Sample => (_sample.ToArray(), _sampleShape is null ? [0, 0, 0] : [_sampled, _sampleShape[1], _sampleShape[2]]);

    public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
    {
        if (data.IsEmpty) return;
        if (shape.Length < 2) throw new OnnxViTQException($"tensor '{tensor}' has rank {shape.Length}; per-channel activation quantization needs a feature map [N, C, …]");
        Finite.Check(data, tensor);
        int channels = checked((int)shape[1]);
        long batch = shape[0];
        int inner = checked((int)(data.Length / Math.Max(1, batch * channels)));
        if (_min is null)
        {
            _min = Enumerable.Repeat(float.PositiveInfinity, channels).ToArray();
            _max = Enumerable.Repeat(float.NegativeInfinity, channels).ToArray();
            _sum = new double[channels];
            _sampleShape = [0, channels, inner];
        }
        else if (_min.Length != channels || _sampleShape![2] != inner)
            throw new OnnxViTQException($"tensor '{tensor}' changed shape between batches ({_min.Length}×{_sampleShape![2]} to {channels}×{inner} per sample)");
        for (long n = 0; n < batch; n++)
        {
            for (int c = 0; c < channels; c++)
            {
                var block = data.Slice(checked((int)((n * channels + c) * inner)), inner);
                _min[c] = Math.Min(_min[c], TensorPrimitives.Min(block));
                _max![c] = Math.Max(_max[c], TensorPrimitives.Max(block));
                _sum![c] += TensorPrimitives.Sum(block);
            }
            if (_sampled < SampleLimit)
            {
                _sample.AddRange(data.Slice(checked((int)(n * channels * inner)), channels * inner).ToArray());
                _sampled++;
            }
        }
        Count += data.Length;
    }
}
