namespace OnnxViTQ.Observers;

/// <summary>
/// The first samples of a tensor, whole: slices along the first (batch) axis, in the order
/// calibration feeds them, up to <see cref="MaxSlices"/> slices and <see cref="MaxElements"/>
/// elements (always at least one slice). Every observer sees the same batches in the same order,
/// so the k-th slice of two tensors comes from the same input: the attention products' interval
/// search pairs a query with its keys this way. Fixed size whatever the number of samples.
/// </summary>
internal sealed class LeadingSlicesObserver(int maxSlices = 8, int maxElements = 1 << 18, string tensor = "activation") : IObserver
{
    private float[] _data = [];
    private long[] _sliceShape = [];
    private int _sliceLength, _count;

    public int MaxSlices { get; } = maxSlices > 0 ? maxSlices : throw new ArgumentOutOfRangeException(nameof(maxSlices));
    public int MaxElements { get; } = maxElements > 0 ? maxElements : throw new ArgumentOutOfRangeException(nameof(maxElements));

    /// <summary>Slices kept.</summary>
    public int Count => _count;

    /// <summary>Shape of one slice (the tensor's shape without its first axis).</summary>
    public IReadOnlyList<long> SliceShape => _sliceShape;

    /// <summary>The kept slices, [Count, ..SliceShape] in C order.</summary>
    public ReadOnlySpan<float> Data => _data.AsSpan(0, _count * _sliceLength);

    public long[] Shape => [_count, .. _sliceShape];

    public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
    {
        if (data.IsEmpty || shape.Length < 2) return;
        var sliceShape = shape[1..].ToArray();
        int length = checked((int)sliceShape.Aggregate(1L, (a, b) => a * b));
        if (_sliceLength == 0)
        {
            _sliceShape = sliceShape;
            _sliceLength = length;
            int capacity = Math.Max(1, Math.Min(MaxSlices, MaxElements / Math.Max(1, length)));
            _data = new float[capacity * length];
        }
        else if (!_sliceShape.AsSpan().SequenceEqual(sliceShape))
            throw new OnnxViTQException($"tensor '{tensor}' changed from [{string.Join(",", _sliceShape)}] to [{string.Join(",", sliceShape)}] per sample between batches");
        int capacitySlices = _data.Length / _sliceLength;
        int take = Math.Min(capacitySlices - _count, (int)shape[0]);
        if (take <= 0) return;
        var kept = data[..(take * length)];
        Finite.Check(kept, tensor);
        kept.CopyTo(_data.AsSpan(_count * length));
        _count += take;
    }
}
