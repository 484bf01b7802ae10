using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>The error a quantized linear layer makes on its output: X·W against Q(X)·Q(W) over
/// the calibration rows sampled at its input (bias left out: it cancels in the difference).</summary>
/// <param name="Node">The MatMul/Gemm.</param>
/// <param name="Activation">Its quantized input.</param>
/// <param name="Weight">Its quantized weight.</param>
/// <param name="Error">SQNR and cosine of the quantized output against the FP32 output.</param>
internal sealed record LayerOutputError(string Node, string Activation, string Weight, QuantizationError Error);

/// <summary>Per-layer output errors of a run, in plan order (what reports list per layer).</summary>
internal sealed record LayerOutputErrors(IReadOnlyList<LayerOutputError> Layers)
{
    /// <summary>
    /// Measures every MatMul/Gemm whose input 0 is a quantized activation with a row sample and
    /// whose input 1 is a quantized constant weight. Cost: rows × K × N multiply-adds per layer,
    /// twice, on SIMD dot products (the sample holds at most 512 rows).
    /// </summary>
    public static LayerOutputErrors Measure(QuantizationPlan plan, ActivationStatistics stats)
    {
        var layers = new List<LayerOutputError>();
        foreach (var node in plan.QuantizedNodes)
        {
            if (node.OpType is not ("MatMul" or "Gemm") || node.Domain.Length > 0) continue;
            var x = node.Input(0);
            var w = node.Input(1);
            if (x is null || w is null || !plan.TryGet(x, out var activation) || activation.IsWeight || activation.Parameters is not { } aq) continue;
            if (!plan.TryGet(w, out var weight) || !weight.IsWeight || weight.Parameters is not { } wq) continue;
            if (!stats.Has(x, ObserverKeys.Rows)) continue;
            if (node.OpType == "Gemm" && (node.GetInt("transA", 0) != 0)) continue;
            var rows = stats.Get<RowSampleObserver>(x, ObserverKeys.Rows);
            var wt = WeightTensor.Read(weight);
            if (wt.Shape.Length != 2 || rows.Count == 0) continue;
            bool transposed = node.OpType == "Gemm" && node.GetInt("transB", 0) != 0;
            int k = (int)(transposed ? wt.Shape[1] : wt.Shape[0]);
            int n = (int)(transposed ? wt.Shape[0] : wt.Shape[1]);
            if (rows.Width != k) continue;

            var xs = rows.Copy();
            var xq = (float[])xs.Clone();
            aq.Simulate(xq, rows.Shape);
            var wqv = (float[])wt.Values.Clone();
            wq.Simulate(wqv, wt.Shape);
            var y = transposed ? Gemm.MultiplyTransposed(xs, rows.Count, k, wt.Values, n) : Gemm.Multiply(xs, rows.Count, k, wt.Values, n);
            var yq = transposed ? Gemm.MultiplyTransposed(xq, rows.Count, k, wqv, n) : Gemm.Multiply(xq, rows.Count, k, wqv, n);
            layers.Add(new LayerOutputError(node.Name, activation.Name, weight.Name, MeasureQuantizationError.Compare(y, yq)));
        }
        return new LayerOutputErrors(layers);
    }
}
