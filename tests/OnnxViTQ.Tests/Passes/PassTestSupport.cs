using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Tests.Passes;

internal static class PassTestSupport
{
    /// <summary>Site selection, role tagging and quantizer assignment with <paramref name="table"/>
    /// (default: the minmax recipe's), then statistics computed by running <paramref name="input"/>
    /// through ONNX Runtime into the observers each site asks for — calibration for graphs that
    /// have no image input, so single passes can be tested.</summary>
    public static PassContext SelectAndObserve(Model model, float[] input, long[] shape, BitWidths? bits = null, QuantizerTable? table = null)
    {
        var context = new PassContext();
        new SelectQuantizationSites().Run(model, context);
        new TagViTRoles().Run(model, context);
        new AssignQuantizers(table ?? new QuantizerTable(), bits ?? BitWidths.W8A8, "test").Run(model, context);
        var plan = context.Get<QuantizationPlan>();
        var activations = plan.Activations.ToList();
        var bytes = Support.Ort.Bytes(model, activations.Select(s => s.Value));
        var values = Support.Ort.RunWithShapes(bytes, model.Graph.Inputs[0].Name, input, shape, activations.Select(a => a.Name).ToArray());
        var observers = new Dictionary<(Value, string), IObserver>();
        for (int i = 0; i < activations.Count; i++)
        {
            var site = activations[i];
            var requests = site.Spec!.KindInfo.Observers(site).Append(new ObserverRequest(ObserverKeys.Rows, () => new RowSampleObserver(tensor: site.Name)))
                .Append(new ObserverRequest(ObserverKeys.Channels, () => new PerChannelMinMaxObserver(site.Name)));
            if (site.Uses.Any(u => u.Node.OpType == "Conv" && u.InputIndex == 0))
                requests = requests.Append(new ObserverRequest(ObserverKeys.FeatureChannels, () => new FeatureMapChannelObserver(site.Name)));
            foreach (var r in requests)
            {
                if (observers.ContainsKey((site.Value, r.Key))) continue;
                var o = r.Create();
                o.Observe(values[i].Data, values[i].Shape);
                observers[(site.Value, r.Key)] = o;
            }
        }
        context.Set(new ActivationStatistics(observers, 1));
        return context;
    }

    public static int Count(Model m, string op) => m.Graph.Nodes.Count(n => n.OpType == op);
}
