using System.Numerics.Tensors;

namespace OnnxViTQ.Observers;

/// <summary>
/// Range statistics of the rows (tokens) of activations [.., tokens, channels]: for each token
/// position, the smallest row minimum and largest row maximum seen, and the mean row range.
/// This is what per-token (dynamic) quantization works with: how much ranges differ between
/// tokens, and which positions (e.g. the class token) stand out.
/// </summary>
internal sealed class PerTokenObserver(string tensor = "activation") : IObserver
{
    private float[] _min = [], _max = [];
    private double[] _rangeSum = [];
    private long[] _rows = [];

    public IReadOnlyList<float> TokenMin => _min;
    public IReadOnlyList<float> TokenMax => _max;
    public int Tokens => _min.Length;

    /// <summary>Mean of (max − min) over the rows seen at each token position.</summary>
    public IReadOnlyList<double> MeanRange => _rangeSum.Select((s, i) => _rows[i] == 0 ? 0 : s / _rows[i]).ToArray();

    public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
    {
        if (shape.Length < 2) throw new OnnxViTQException("per-token statistics need a tensor with tokens and channels");
        Finite.Check(data, tensor);
        int channels = checked((int)shape[^1]), tokens = checked((int)shape[^2]);
        Grow(tokens);
        int row = 0;
        for (int offset = 0; offset + channels <= data.Length; offset += channels, row++)
        {
            var slice = data.Slice(offset, channels);
            float lo = TensorPrimitives.Min(slice), hi = TensorPrimitives.Max(slice);
            int t = row % tokens;
            _min[t] = Math.Min(_min[t], lo);
            _max[t] = Math.Max(_max[t], hi);
            _rangeSum[t] += hi - lo;
            _rows[t]++;
        }
    }

    private void Grow(int tokens)
    {
        if (tokens <= _min.Length) return;
        int old = _min.Length;
        Array.Resize(ref _min, tokens);
        Array.Resize(ref _max, tokens);
        Array.Resize(ref _rangeSum, tokens);
        Array.Resize(ref _rows, tokens);
        for (int i = old; i < tokens; i++) { _min[i] = float.PositiveInfinity; _max[i] = float.NegativeInfinity; }
    }
}
