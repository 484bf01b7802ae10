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

/// <summary>
/// Liu et al. 2021's bias correction: quantization shifts a linear layer's output by
/// E[Q(X)·Q(W) − X·W] per output channel; that expectation, over the calibration rows sampled at
/// the layer's input, is subtracted from the layer's bias — Gemm's C, the constant of the Add
/// that follows a MatMul, or a new bias (a Gemm gets C, a MatMul gets an Add) where there is none.
/// The weights and quantizers are unchanged. Run it after the quantizers are final.
/// With a <see cref="PlanCheck"/>, the corrections are kept only if they bring the quantized
/// model's outputs closer to the FP32 model's on the leading calibration samples
/// (<see cref="PlanCheck.Verdict.Improves"/>: mean KL of the class distributions significantly
/// lower, top-1 agreement not lower; both models run by ONNX Runtime): each correction is right for its layer
/// on FP32 inputs, but in the quantized network its input already carries the upstream layers'
/// error, and measured on the reference models the whole set sometimes cost accuracy.
/// </summary>
internal sealed class CorrectBias(bool measureBefore = false, PlanCheck? check = null) : IPass, IPassContract
{
    public string Name => "correct-bias";
    public IReadOnlyList<Type> Requires => [typeof(QuantizersFitted), typeof(ActivationStatistics)];
    public IReadOnlyList<Type> Produces => [];

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var stats = context.Get<ActivationStatistics>();
        if (measureBefore && !context.TryGet<LayerOutputErrorsBefore>(out _))
            context.Set(new LayerOutputErrorsBefore(LayerOutputErrors.Measure(plan, stats)));
        var corrections = context.TryGet<BiasCorrections>(out var existing) ? existing : new BiasCorrections();
        var pending = new List<(WeightedLinear Layer, float[] Error, int Rows)>();
        foreach (var node in plan.QuantizedNodes)
        {
            if (WeightedLinear.Of(node, plan) is not { } layer || !stats.Has(layer.Activation.Value, ObserverKeys.Rows)) continue;
            var rows = stats.Get<RowSampleObserver>(layer.Activation.Value, ObserverKeys.Rows);
            if (rows.Width != layer.K || rows.Count == 0) continue;
            pending.Add((layer, MeanError(layer, rows), rows.Count));
        }
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

    /// <summary>
    /// E[Q(X)·Q(W) − X·W] per output channel over the sampled rows, kept only where it is
    /// significant: a channel whose mean error is within <see cref="Significance"/> standard errors
    /// of zero gets no correction, since subtracting a sampling-noise estimate adds error
    /// (measured: on vit-outliers at W6A6 the unfiltered correction cost 0.2 pt).
    /// </summary>
    internal static float[] MeanError(WeightedLinear layer, RowSampleObserver rows) => MeanError(layer, rows, Significance);

    /// <summary>Standard errors a channel's mean error must exceed to be corrected.</summary>
    public const double Significance = 3;

    internal static float[] MeanError(WeightedLinear layer, RowSampleObserver rows, double significance)
    {
        var x = rows.Copy();
        var xq = rows.Copy();
        layer.Activation.Parameters!.Simulate(xq, rows.Shape);
        var y = layer.Multiply(x, rows.Count, layer.W);
        var yq = layer.Multiply(xq, rows.Count, layer.Simulated(layer.Weight.Parameters!));
        var sum = new double[layer.N];
        var squares = new double[layer.N];
        for (int r = 0; r < rows.Count; r++)
            for (int j = 0; j < layer.N; j++)
            {
                double d = yq[r * layer.N + j] - y[r * layer.N + j];
                sum[j] += d;
                squares[j] += d * d;
            }
        int count = rows.Count;
        var e = new float[layer.N];
        for (int j = 0; j < layer.N; j++)
        {
            double mean = sum[j] / count;
            double variance = Math.Max(0, squares[j] / count - mean * mean);
            double standardError = Math.Sqrt(variance / Math.Max(1, count - 1));
            e[j] = Math.Abs(mean) > significance * standardError ? (float)mean : 0f;
        }
        return e;
    }

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
