using OnnxViTQ.Observers;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Search;

/// <summary>
/// The exact mean output error E[Q(X)·Q(W) − X·W] of one linear layer over every row of its
/// input the calibration data produces, observed at that input. By linearity it is
/// mean(Q(X))·Q(W) − mean(X)·W, so the observer keeps only per-channel sums (fixed size):
/// each slice of the first axis (an image; a window for Swin's windowed layers) contributes the
/// error of its row means, and the spread of those per-slice errors gives the standard error —
/// rows of one image are correlated, so slices, not rows, are the independent draws.
/// </summary>
internal sealed class LayerMeanErrorObserver(WeightedLinear layer, FittedQuantizer activation, float[] simulatedWeight, string tensor) : IObserver
{
    private readonly double[] _sum = new double[layer.N];
    private readonly double[] _squares = new double[layer.N];
    private long _slices, _rows;

    public long Rows => _rows;

    public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
    {
        if (data.IsEmpty) return;
        Finite.Check(data, tensor);
        int k = layer.K;
        if (shape[^1] != k) throw new OnnxViTQException($"tensor '{tensor}' has rows of {shape[^1]}, layer '{layer.Node.Name}' reads {k}");
        int slices = checked((int)shape[0]);
        int rowsPerSlice = data.Length / k / slices;
        var quantized = data.ToArray();
        activation.Simulate(quantized, shape);
        var meanX = new float[slices * k];
        var meanQ = new float[slices * k];
        for (int s = 0; s < slices; s++)
        {
            var mx = meanX.AsSpan(s * k, k);
            var mq = meanQ.AsSpan(s * k, k);
            var sumX = new double[k];
            var sumQ = new double[k];
            for (int r = 0; r < rowsPerSlice; r++)
            {
                int offset = (s * rowsPerSlice + r) * k;
                for (int c = 0; c < k; c++)
                {
                    sumX[c] += data[offset + c];
                    sumQ[c] += quantized[offset + c];
                }
            }
            for (int c = 0; c < k; c++)
            {
                mx[c] = (float)(sumX[c] / rowsPerSlice);
                mq[c] = (float)(sumQ[c] / rowsPerSlice);
            }
        }
        var y = layer.Multiply(meanX, slices, layer.W);
        var yq = layer.Multiply(meanQ, slices, simulatedWeight);
        for (int s = 0; s < slices; s++)
            for (int j = 0; j < layer.N; j++)
            {
                double d = yq[s * layer.N + j] - y[s * layer.N + j];
                _sum[j] += d;
                _squares[j] += d * d;
            }
        _slices += slices;
        _rows += (long)slices * rowsPerSlice;
    }

    /// <summary>The mean error per output channel where it exceeds <paramref name="significance"/>
    /// standard errors, 0 elsewhere (a correction within sampling noise adds error on new data).</summary>
    public float[] MeanError(double significance)
    {
        var e = new float[layer.N];
        if (_slices < 2) return e;
        for (int j = 0; j < layer.N; j++)
        {
            double mean = _sum[j] / _slices;
            double variance = Math.Max(0, (_squares[j] - _slices * mean * mean) / (_slices - 1));
            double standardError = Math.Sqrt(variance / _slices);
            e[j] = Math.Abs(mean) > significance * standardError ? (float)mean : 0f;
        }
        return e;
    }
}
