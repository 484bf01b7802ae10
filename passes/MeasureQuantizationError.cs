using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// Analysis: the error each fitted quantizer makes on calibration data — SQNR
/// 10·log10(Σx² / Σ(x − x̂)²) and cosine similarity — over the site's sample of calibration rows
/// (activations) or the whole tensor (weights). The report lists it per site. Also each linear
/// layer's output error (<see cref="LayerOutputErrors"/>) when <paramref name="layerOutputs"/> is set:
/// that costs two matrix products per layer, so only runs that write a report pay for it.
/// </summary>
internal sealed class MeasureQuantizationError(bool layerOutputs = false) : IPass
{
    public string Name => "measure-error";
    public PassContract Contract { get; } = new([Stages.Fitted], []);

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        context.TryGet<ActivationStatistics>(out var stats);
        foreach (var site in plan.Sites.ToList())
        {
            if (site.Parameters is not { } q) continue;
            float[] x;
            long[] shape;
            if (site.IsWeight)
            {
                var w = WeightTensor.Read(site);
                (x, shape) = (w.Values, w.Shape);
            }
            else if (stats is not null && q.Granularity == Granularity.PerChannel && stats.Has(site.Value, ObserverKeys.FeatureChannels))
            {
                // Per-channel feature maps: whole samples, so the channel axis is where the quantizer expects it.
                (x, shape) = stats.Get<FeatureMapChannelObserver>(site.Value, ObserverKeys.FeatureChannels).Sample;
            }
            else if (stats is not null && stats.Has(site.Value, ObserverKeys.Rows))
            {
                var rows = stats.Get<RowSampleObserver>(site.Value, ObserverKeys.Rows);
                (x, shape) = (rows.Copy(), rows.Shape);
            }
            else continue;
            if (x.Length == 0) continue;
            var xq = (float[])x.Clone();
            q.Simulate(xq, shape);
            plan.Update(site with { Error = Compare(x, xq) });
        }
        if (layerOutputs && stats is not null)
            context.Set(LayerOutputErrors.Measure(plan, stats, context.TryGet<Search.BiasCorrections>(out var corrections) ? corrections : null));
        return PassResult.Unchanged;
    }

    public static QuantizationError Compare(ReadOnlySpan<float> x, ReadOnlySpan<float> xq)
    {
        double signal = 0, noise = 0, dot = 0, qq = 0;
        for (int i = 0; i < x.Length; i++)
        {
            double d = x[i] - xq[i];
            signal += (double)x[i] * x[i];
            noise += d * d;
            dot += (double)x[i] * xq[i];
            qq += (double)xq[i] * xq[i];
        }
        double sqnr = noise == 0 ? double.PositiveInfinity : signal == 0 ? double.NegativeInfinity : 10 * Math.Log10(signal / noise);
        double cosine = signal == 0 || qq == 0 ? (signal == qq ? 1 : 0) : dot / Math.Sqrt(signal * qq);
        return new QuantizationError(sqnr, cosine, x.Length);
    }
}
