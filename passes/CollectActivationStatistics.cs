using OnnxViTQ.Capture;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// Analysis: runs the calibration data through ONNX Runtime once and feeds every activation site
/// to the observers its quantizer kind asks for, plus a sample of rows (error measurement and
/// searches) and, for inputs of linear layers, per-channel statistics (reparameterizations).
/// With <c>captureProducts</c>, both operands of every MatMul of two quantized activations also keep
/// their first samples whole (<see cref="LeadingSlicesObserver"/>, for the interval search).
/// Streaming (see <see cref="ActivationCapture"/>): memory does not grow with the sample count.
/// </summary>
internal sealed class CollectActivationStatistics(ICalibrationSource source, int batchSize, int maxSamples, string modelName, bool captureProducts = false) : IPass
{
    public string Name => "collect-statistics";
    public PassContract Contract { get; } = new([Stages.QuantizersAssigned], [Stages.Statistics]);

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var observers = new Dictionary<(Value, string), IObserver>();
        foreach (var site in plan.Activations)
        {
            if (site.Spec is null) throw new InvalidOperationException($"site '{site.Name}' has no quantizer; run assign-quantizers first");
            var requests = site.Spec.KindInfo.Observers(site).Append(new ObserverRequest(ObserverKeys.Rows, () => new RowSampleObserver(tensor: site.Name)));
            // Per-channel statistics of every linear layer's input: reparameterizations fold
            // channel scales wherever a LayerNorm's output reaches (post-LN sites, Swin's pooled head).
            if (site.Uses.Any(u => u.InputIndex == 0 && Analysis.ViTPatterns.IsLinear(u.Node)))
                requests = requests.Append(new ObserverRequest(ObserverKeys.Channels, () => new PerChannelMinMaxObserver(site.Name)));
            // Per-channel means of a CNN part's convolution inputs, for their bias correction.
            if (site.Uses.Any(u => u.InputIndex == 0 && u.Node.OpType == "Conv" && !Analysis.ConvShape.IsPatchEmbedding(u.Node)))
                requests = requests.Append(new ObserverRequest(ObserverKeys.FeatureChannels, () => new FeatureMapChannelObserver(site.Name)));
            // The attention products' search pairs each operand with the other's values on the same
            // images: both operands keep their first samples whole (fixed size).
            if (captureProducts && site.Uses.Any(u => IsActivationProductOperand(u.Node, plan)))
                requests = requests.Append(new ObserverRequest(ObserverKeys.Slices, () => new LeadingSlicesObserver(tensor: site.Name)));
            foreach (var request in requests)
                if (!observers.ContainsKey((site.Value, request.Key))) observers[(site.Value, request.Key)] = request.Create();
        }
        long samples = 0;
        if (observers.Count > 0)
        {
            var byName = observers.GroupBy(kv => kv.Key.Item1.Name)
                .ToDictionary(g => g.Key, g => (IReadOnlyList<IObserver>)g.Select(kv => kv.Value).ToList());
            using var capture = new ActivationCapture(model, byName.Keys, modelName);
            capture.Run(source, byName, batchSize, maxSamples, context.Progress, context.Cancellation);
            samples = capture.SamplesSeen;
        }
        context.Info($"calibrated {plan.Activations.Count()} activations on {samples} samples of '{source.Name}'");
        context.Set(new ActivationStatistics(observers, samples));
        return PassResult.Unchanged;
    }

    private static bool IsActivationProductOperand(Node node, QuantizationPlan plan) =>
        Analysis.ViTPatterns.IsActivationProduct(node) && node.Inputs.Take(2).All(i => i is not null && plan.TryGet(i, out var s) && !s.IsWeight);
}
