using OnnxViTQ.Capture;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Search;

/// <summary>Per-output-channel corrections subtracted from linear layers' biases, by node name.</summary>
internal sealed class BiasCorrections
{
    private readonly Dictionary<string, float[]> _byNode = [];
    public void Set(string node, float[] correction) => _byNode[node] = correction;
    public float[]? For(string node) => _byNode.GetValueOrDefault(node);
    public int Count => _byNode.Count;
}

/// <summary>The calibration data a pass runs through ONNX Runtime again (up to <paramref name="MaxSamples"/> samples).</summary>
internal sealed record CalibrationRun(ICalibrationSource Source, int BatchSize, int MaxSamples, string ModelName);

/// <summary>
/// Liu et al. 2021's bias correction: quantization shifts a linear layer's output by
/// E[Q(X)·Q(W) − X·W] per output channel; that expectation, over every row the calibration data
/// produces at the layer's input (one more ONNX Runtime pass over it, with the final quantizers:
/// <see cref="LayerMeanErrorObserver"/>), is subtracted from the layer's bias — Gemm's C, the constant of the Add
/// that follows a MatMul, or a new bias (a Gemm gets C, a MatMul gets an Add) where there is none.
/// The weights and quantizers are unchanged. Run it after the quantizers are final.
/// With a <see cref="PlanCheck"/>, the corrections are kept only if they bring the quantized
/// model's outputs closer to the FP32 model's on the leading calibration samples
/// (<see cref="PlanCheck.Verdict.Improves"/>: mean KL of the class distributions significantly
/// lower, top-1 agreement not lower; both models run by ONNX Runtime): each correction is right for its layer
/// on FP32 inputs, but in the quantized network its input already carries the upstream layers'
/// error, and measured on the reference models the whole set sometimes cost accuracy.
/// </summary>
internal sealed class CorrectBias(CalibrationRun calibration, bool measureBefore = false, PlanCheck? check = null) : IPass
{
    public string Name => "correct-bias";
    public PassContract Contract { get; } = new([Stages.Fitted, Stages.Statistics], [], [Stages.LinearsLowered, Stages.PortableEmitted]);

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var stats = context.Get<ActivationStatistics>();
        if (measureBefore && !context.TryGet<LayerOutputErrorsBefore>(out _))
            context.Set(new LayerOutputErrorsBefore(LayerOutputErrors.Measure(plan, stats)));
        var corrections = context.TryGet<BiasCorrections>(out var existing) ? existing : new BiasCorrections();
        var pending = MeanErrors(model, plan, context).Select(m => (m.Layer, Error: m.Observer.MeanError(Significance), m.Observer.Rows)).ToList();
        if (check is not null && pending.Count > 0)
        {
            context.Progress?.Report(new ProgressReport("checking bias correction", 0, 3, "model runs"));
            var reference = check.Reference(model);
            context.Progress?.Report(new ProgressReport("checking bias correction", 1, 3, "model runs"));
            var without = check.Measure(model, plan, reference);
            context.Progress?.Report(new ProgressReport("checking bias correction", 2, 3, "model runs"));
            var with = check.Measure(model, plan, reference, (copy, map, copyPlan) =>
            {
                foreach (var (layer, e, _) in pending) Apply(copy.Graph, layer with { Node = map(layer.Node) }, e, copyPlan, out _);
            });
            context.Progress?.Report(new ProgressReport("checking bias correction", 3, 3, "model runs"));
            var verdict = PlanCheck.Compare(without, with);
            if (!verdict.Improves)
            {
                context.Info($"bias correction: not applied, it does not bring the outputs significantly closer to FP32 without changing more top-1 classes, on {verdict.Samples} calibration samples: {verdict}");
                foreach (var (layer, _, _) in pending)
                    plan.Update(plan.For(layer.Weight.Value).WithNote($"{layer.Node.Name}: bias correction computed but not applied (the model-level check rejected it)"));
                context.Set(corrections);
                return PassResult.Unchanged;
            }
            context.Info($"bias correction: checked on {verdict.Samples} calibration samples, {verdict}");
        }
        int corrected = 0;
        var skipped = new List<string>();
        foreach (var (layer, e, rowCount) in pending)
        {
            if (!Apply(model.Graph, layer, e, plan, out string why))
            {
                skipped.Add($"{layer.Node.Name} ({why})");
                continue;
            }
            corrections.Set(layer.Node.Name, e);
            plan.Update(plan.For(layer.Weight.Value).WithNote($"{layer.Node.Name}: bias corrected by the mean output error over {rowCount} calibration rows"));
            corrected++;
        }
        context.Set(corrections);
        context.Info($"bias correction: {corrected} linear layer(s)" + (skipped.Count > 0 ? $"; not corrected: {string.Join("; ", skipped)}" : ""));
        return new PassResult(corrected > 0);
    }

    /// <summary>Every planned linear layer's mean error observer, fed by one ONNX Runtime pass over the calibration data.</summary>
    internal List<(WeightedLinear Layer, LayerMeanErrorObserver Observer)> MeanErrors(Model model, QuantizationPlan plan, PassContext context)
    {
        var layers = new List<(WeightedLinear Layer, LayerMeanErrorObserver Observer)>();
        foreach (var node in plan.QuantizedNodes)
            if (WeightedLinear.Of(node, plan) is { } layer)
                layers.Add((layer, new LayerMeanErrorObserver(layer, layer.Activation.Parameters!, layer.Simulated(layer.Weight.Parameters!), layer.Activation.Name)));
        if (layers.Count == 0) return layers;
        var byName = layers.GroupBy(l => l.Layer.Activation.Value.Name)
            .ToDictionary(g => g.Key, g => (IReadOnlyList<IObserver>)g.Select(l => (IObserver)l.Observer).ToList());
        using var capture = new ActivationCapture(model, byName.Keys, calibration.ModelName, onlyTheseTensors: true);
        capture.Run(calibration.Source, byName, calibration.BatchSize, calibration.MaxSamples, context.Progress, context.Cancellation);
        return layers;
    }

    /// <summary>Standard errors (of the per-image mean errors) a channel's mean error must exceed
    /// to be corrected: subtracting a sampling-noise estimate adds error on new data.</summary>
    public const double Significance = 3;

    /// <summary>Replaces the layer's bias b by b − <paramref name="total"/>, b being the bias before
    /// any correction (a second run replaces the first correction rather than adding to it).</summary>
    private static bool Apply(Graph graph, WeightedLinear layer, float[] total, QuantizationPlan plan, out string why)
    {
        var node = layer.Node;
        int n = layer.N;
        if (node.OpType == "Gemm")
        {
            if (node.GetFloat("alpha", 1) != 1 || node.GetFloat("beta", 1) != 1) { why = "Gemm with alpha/beta ≠ 1"; return false; }
            var c = node.Input(2);
            float[] bias = new float[n];
            if (c is not null)
            {
                if (!Constants.TryGetTensor(c, out var ct) || ct.ElementCount != n || ct.Dims[^1] != n) { why = "its C is not a constant of the output width"; return false; }
                bias = Original(c, ct.ToFloats());
            }
            node.SetInput(2, NewBias(graph, node, bias, total));
            why = "";
            return true;
        }
        var output = node.Output();
        if (output.Consumers.Count == 1 && output.Consumers[0].Node is { OpType: "Add", Domain: "" } add && add.Inputs.Count == 2
            && add.Input(1 - output.Consumers[0].InputIndex) is { } other && Constants.TryGetTensor(other, out var bt) && bt.ElementCount == n && bt.Dims[^1] == n)
        {
            add.SetInput(1 - output.Consumers[0].InputIndex, NewBias(graph, node, Original(other, bt.ToFloats()), total));
            why = "";
            return true;
        }
        if (plan.TryGet(output, out _)) { why = "no bias, and its output is itself quantized"; return false; }
        var consumers = output.Consumers.ToList();
        string name = output.Name;
        var biasAdd = graph.AddNode("Add", [output, NewBias(graph, node, new float[n], total)], [name + "_bias_corrected"],
            before: consumers.FirstOrDefault().Node);
        var corrected = biasAdd.Output();
        corrected.Type = output.Type;
        foreach (var use in consumers) use.Node.SetInput(use.InputIndex, corrected);
        if (output.IsGraphOutput)
        {
            // The model's outputs are its interface: the corrected value takes the name.
            graph.ReplaceOutput(output, corrected);
            graph.Rename(output, graph.UniqueName(name + "_uncorrected"));
            graph.Rename(corrected, name);
        }
        why = "";
        return true;
    }

    /// <summary>The bias before any correction: a corrected bias constant remembers it.</summary>
    private static float[] Original(Value bias, float[] current) =>
        bias.Meta.TryGetValue(OriginalBiasKey, out var original) ? (float[])original : current;

    private const string OriginalBiasKey = "onnxvitq.original-bias";

    private static Value NewBias(Graph graph, Node node, float[] original, float[] total)
    {
        var corrected = new float[original.Length];
        for (int j = 0; j < corrected.Length; j++) corrected[j] = original[j] - total[j];
        var value = graph.AddInitializer(graph.UniqueName(node.Name + "_bias_corrected"), Tensor.FromFloats([corrected.Length], corrected));
        value.Meta[OriginalBiasKey] = original;
        return value;
    }
}
