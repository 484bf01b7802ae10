using OnnxViTQ.Capture;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;

namespace OnnxViTQ.Passes;

/// <summary>
/// The model's first output on the leading calibration samples, run by ONNX Runtime: as it is
/// (FP32, the reference) or with a plan emitted the way <see cref="EmitPortable"/> writes it (on a
/// copy; the model and the plan are unchanged). Passes that must check a decision end to end —
/// not only on one layer's output — compare the two (<see cref="MeanKl"/>).
/// </summary>
internal static class PlanOutputs
{
    /// <summary>Outputs of <paramref name="model"/>, one row per sample, at most <paramref name="samples"/>.</summary>
    public static float[][] Run(Model model, ICalibrationSource source, int batchSize, int samples, string modelName)
    {
        var output = model.Graph.Outputs[0];
        var recorder = new OutputRecorder(Math.Min(samples, source.Count));
        using var capture = new ActivationCapture(model, [output.Name], modelName);
        capture.Run(source, new Dictionary<string, IReadOnlyList<IObserver>> { [output.Name] = [recorder] }, batchSize, samples);
        return recorder.Rows.ToArray();
    }

    /// <summary>The tensor <paramref name="value"/> of <paramref name="model"/> on the leading samples,
    /// one flattened array per calibration batch (batches are the same from run to run, so two runs
    /// compare element by element). Only the nodes the tensor depends on are run.</summary>
    public static List<float[]> RunValue(Model model, string value, ICalibrationSource source, int batchSize, int samples, string modelName)
    {
        var recorder = new BatchRecorder();
        using var capture = new ActivationCapture(model, [value], modelName, onlyTheseTensors: true);
        capture.Run(source, new Dictionary<string, IReadOnlyList<IObserver>> { [value] = [recorder] }, batchSize, samples);
        return recorder.Batches;
    }

    /// <summary>A copy of <paramref name="model"/> with <paramref name="plan"/>'s fitted quantizers
    /// emitted in portable form; <paramref name="edit"/> changes the copy first (it gets the copy,
    /// the map from the model's nodes to the copy's, and the plan re-bound to the copy).</summary>
    public static Model Emitted(Model model, QuantizationPlan plan, Action<Model, Func<Node, Node>, QuantizationPlan>? edit = null)
    {
        var copy = OnnxModelReader.Parse(OnnxModelWriter.ToBytes(model), sourceName: "plan check");
        // The copy keeps node order and value names: sites are re-bound by them.
        var nodes = model.Graph.Nodes.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => copy.Graph.Nodes[p.i]);
        var rebound = new QuantizationPlan();
        foreach (var site in plan.Sites)
            rebound.Add(site with
            {
                Value = copy.Graph.Lookup(site.Name) ?? throw new InvalidOperationException($"'{site.Name}' did not survive the copy"),
                Uses = site.Uses.Select(u => new Use(nodes[u.Node], u.InputIndex)).ToList(),
            });
        edit?.Invoke(copy, n => nodes[n], rebound);
        var context = new PassContext();
        context.Set(rebound);
        new EmitPortable().Run(copy, context);
        return copy;
    }

    /// <summary>Mean over samples of KL(softmax(reference) ‖ softmax(other)) (natural log), and
    /// each sample's term: how far a quantized classifier's class distribution moved.</summary>
    public static (double Mean, double[] PerSample) MeanKl(IReadOnlyList<float[]> reference, IReadOnlyList<float[]> other)
    {
        if (reference.Count != other.Count || reference.Count == 0) throw new ArgumentException($"cannot compare {reference.Count} against {other.Count} samples");
        var terms = new double[reference.Count];
        for (int i = 0; i < terms.Length; i++)
        {
            var p = LogSoftmax(reference[i]);
            var q = LogSoftmax(other[i]);
            double kl = 0;
            for (int c = 0; c < p.Length; c++) kl += Math.Exp(p[c]) * (p[c] - q[c]);
            terms[i] = Math.Max(0, kl);
        }
        return (terms.Average(), terms);
    }

    private static double[] LogSoftmax(float[] logits)
    {
        double max = logits.Max();
        double log = Math.Log(logits.Sum(v => Math.Exp(v - max))) + max;
        return logits.Select(v => v - log).ToArray();
    }

    /// <summary>Keeps each sample's output (flattened) for the first samples.</summary>
    private sealed class OutputRecorder(int capacity) : IObserver
    {
        public List<float[]> Rows { get; } = [];

        public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape)
        {
            int batch = (int)shape[0];
            if (batch == 0) return;
            int width = data.Length / batch;
            for (int b = 0; b < batch && Rows.Count < capacity; b++) Rows.Add(data.Slice(b * width, width).ToArray());
        }
    }

    private sealed class BatchRecorder : IObserver
    {
        public List<float[]> Batches { get; } = [];

        public void Observe(ReadOnlySpan<float> data, ReadOnlySpan<long> shape) => Batches.Add(data.ToArray());
    }
}
