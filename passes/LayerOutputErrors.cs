using OnnxViTQ.Observers;
using OnnxViTQ.Passes.Search;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>The error a quantized linear layer makes on its output: X·W against Q(X)·Q(W) (minus
/// the bias correction, when one was applied) over the calibration rows sampled at its input; the
/// bias itself cancels in the difference and is left out.</summary>
/// <param name="Node">The MatMul/Gemm.</param>
/// <param name="Activation">Its quantized input.</param>
/// <param name="Weight">Its quantized weight.</param>
/// <param name="Error">SQNR and cosine of the quantized output against the FP32 output.</param>
internal sealed record LayerOutputError(string Node, string Activation, string Weight, QuantizationError Error);

/// <summary>Per-layer output errors of a run, in plan order (what reports list per layer).</summary>
internal sealed record LayerOutputErrors(IReadOnlyList<LayerOutputError> Layers)
{
    /// <summary>
    /// Measures every <see cref="WeightedLinear"/> whose input has a row sample. Cost: rows × K × N
    /// multiply-adds per layer, twice (the sample holds at most 512 rows).
    /// </summary>
    public static LayerOutputErrors Measure(QuantizationPlan plan, ActivationStatistics stats, BiasCorrections? corrections = null)
    {
        var layers = new List<LayerOutputError>();
        foreach (var node in plan.QuantizedNodes)
        {
            if (WeightedLinear.Of(node, plan) is not { } layer || !stats.Has(layer.Activation.Value, ObserverKeys.Rows)) continue;
            var rows = stats.Get<RowSampleObserver>(layer.Activation.Value, ObserverKeys.Rows);
            if (rows.Width != layer.K || rows.Count == 0) continue;
            var x = rows.Copy();
            var xq = rows.Copy();
            layer.Activation.Parameters!.Simulate(xq, rows.Shape);
            var y = layer.Multiply(x, rows.Count, layer.W);
            var yq = layer.Multiply(xq, rows.Count, layer.Simulated(layer.Weight.Parameters!));
            if (corrections?.For(node.Name) is { } e)
                for (int r = 0; r < rows.Count; r++)
                    for (int j = 0; j < layer.N; j++) yq[r * layer.N + j] -= e[j];
            layers.Add(new LayerOutputError(node.Name, layer.Activation.Name, layer.Weight.Name, MeasureQuantizationError.Compare(y, yq)));
        }
        return new LayerOutputErrors(layers);
    }
}

/// <summary>Layer output errors measured before the interval search and bias correction changed
/// anything, for the report's before/after columns.</summary>
internal sealed record LayerOutputErrorsBefore(LayerOutputErrors Errors);
