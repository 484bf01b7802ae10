using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Tests.Passes;

internal static class PassTestSupport
{
    /// <summary>Runs target selection, then stands in for calibration with statistics computed
    /// by running <paramref name="input"/> through ONNX Runtime, so single passes can be tested
    /// on graphs that have no image input.</summary>
    public static PassContext SelectAndObserve(Model model, float[] input, long[] shape)
    {
        var context = new PassContext();
        new SelectMatMulTargets().Run(model, context);
        var activations = context.Get<QuantizationTargets>().Activations;
        var bytes = Support.Ort.Bytes(model, activations);
        var values = Support.Ort.Run(bytes, model.Graph.Inputs[0].Name, input, shape, activations.Select(a => a.Name).ToArray());
        var observers = new Dictionary<Value, IObserver>();
        for (int i = 0; i < activations.Count; i++)
        {
            var o = new MinMaxObserver();
            o.Observe(values[i], [values[i].Length]);
            observers[activations[i]] = o;
        }
        context.Set(new ActivationStatistics(observers, 1));
        return context;
    }

    public static int Count(Model m, string op) => m.Graph.Nodes.Count(n => n.OpType == op);
}
