using System.Numerics.Tensors;

namespace OnnxViTQ.Observers;

/// <summary>Minimum and maximum of every channel of the last dimension (the hidden dimension of
/// transformer activations [.., tokens, channels]) — the input of per-channel schemes such as
/// RepQ-ViT's reparameterization.</summary>
public sealed class PerChannelMinMaxObserver : IObserver
{
    private float[]? _min, _max;

    public IReadOnlyList<float> Min => _min ?? [];
    public IReadOnlyList<float> Max => _max ?? [];
    public int Channels => _min?.Length ?? 0;

    public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
    {
        int channels = checked((int)shape[^1]);
        if (_min is null)
        {
            _min = Enumerable.Repeat(float.PositiveInfinity, channels).ToArray();
            _max = Enumerable.Repeat(float.NegativeInfinity, channels).ToArray();
        }
        else if (_min.Length != channels)
            throw new OnnxViTQException($"tensor changed from {_min.Length} to {channels} channels between batches");
        for (int row = 0; row + channels <= data.Length; row += channels)
        {
            var slice = data.Slice(row, channels);
            TensorPrimitives.Min(slice, _min, _min);
            TensorPrimitives.Max(slice, _max!, _max!);
        }
    }
}
