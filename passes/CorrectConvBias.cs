using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Analysis;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// Bias correction of convolutions (Nagel et al. 2019, analytical form): quantizing a convolution's
/// weights shifts its output channel o by E[conv(x, Ŵ − W)]_o = Σ_{i,k} (Ŵ − W)[o,i,k] · E[x_i]
/// (border padding aside), with E[x_i] the mean of input channel i over the calibration data;
/// that shift is subtracted from the bias (a bias is added where there is none). The weights'
/// codes do not change. Convolutions of a CNN part only: a ViT's patchify embedding reads the
/// normalised image (channel means near zero) and is left as it was measured.
/// </summary>
internal sealed class CorrectConvBias : IPass
{
    public string Name => "correct-conv-bias";
    public PassContract Contract { get; } = new([Stages.Fitted, Stages.Statistics], [], [Stages.LinearsLowered, Stages.PortableEmitted]);

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var stats = context.Get<ActivationStatistics>();
        var corrected = new List<string>();
        foreach (var conv in model.Graph.Nodes.Where(n => n.OpType == "Conv" && n.Domain is "" or "ai.onnx" && !ConvShape.IsPatchEmbedding(n)).ToList())
        {
            if (conv.Input(0) is not { } x || conv.Input(1) is not { } wv) continue;
            if (!plan.TryGet(wv, out var weightSite) || weightSite.Parameters is not { } quantizer) continue;
            if (!stats.Has(x, ObserverKeys.FeatureChannels)) continue;
            var mean = stats.Get<FeatureMapChannelObserver>(x, ObserverKeys.FeatureChannels).Mean;
            var w = WeightTensor.Read(weightSite);
            long group = conv.GetInt("group", 1);
            bool depthwise = ConvShape.IsDepthwise(conv);
            if (group != 1 && !depthwise) continue;
            int outputs = (int)w.Shape[0], inPer = (int)w.Shape[1];
            int kernel = w.Values.Length / (outputs * inPer);
            if (mean.Count != (depthwise ? outputs : inPer)) continue;
            var simulated = (float[])w.Values.Clone();
            quantizer.Simulate(simulated, w.Shape);
            var shift = new float[outputs];
            for (int o = 0; o < outputs; o++)
            {
                double sum = 0;
                for (int i = 0; i < inPer; i++)
                {
                    double mu = mean[depthwise ? o : i];
                    for (int k = 0; k < kernel; k++)
                    {
                        int at = (o * inPer + i) * kernel + k;
                        sum += (simulated[at] - w.Values[at]) * mu;
                    }
                }
                shift[o] = (float)sum;
            }
            SubtractFromBias(model.Graph, conv, shift);
            corrected.Add(conv.Name);
        }
        if (corrected.Count == 0) return PassResult.Unchanged;
        context.Info($"conv bias correction: {corrected.Count} convolutions ({string.Join(", ", corrected)})");
        return PassResult.Changed;
    }

    private static void SubtractFromBias(Graph g, Node conv, float[] shift)
    {
        if (conv.Input(2) is { } bias && Constants.TryGetTensor(bias, out var b))
        {
            var values = b.ToFloats();
            for (int o = 0; o < values.Length; o++) values[o] -= shift[o];
            var corrected = Tensor.FromFloats(b.Dims, values);
            if (bias.IsInitializer && bias.Consumers.Count == 1) g.SetInitializer(bias, corrected);
            else conv.SetInput(2, g.AddInitializer(g.UniqueName($"{conv.Name}_corrected_bias"), corrected));
            return;
        }
        conv.SetInput(2, g.AddInitializer(g.UniqueName($"{conv.Name}_bias"), Tensor.FromFloats([shift.Length], shift.Select(v => -v).ToArray())));
    }
}
