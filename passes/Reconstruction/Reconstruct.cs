using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Reconstruction;

/// <summary>
/// Module-wise weight reconstruction: for each attention and MLP module, the rounding of its
/// weights is chosen by <see cref="AdaRound"/> so that the module's output matches the FP32
/// module's on calibration samples. The module runs from its first linear layer's input to its
/// last linear layer's output (through a bias Add, reshapes and transposes up to the residual
/// Add); its inputs and targets are the FP32 model's own tensors there, captured by ONNX Runtime.
/// Only the weights' codes change (grids with <see cref="IChoosableRounding"/>); activations keep
/// their fitted steps. While a module is optimized, its uniform per-tensor activations are
/// simulated (straight-through rounding); other kinds stay float inside it (not yet: activation
/// steps, the other kinds' differentiable forms, the attention-score KL term and inputs from the
/// already-quantized preceding modules).
/// A module that cannot be cut out on its own (it needs another tensor than its input) or whose
/// path has an op without a gradient rule keeps round-to-nearest, with the reason in the report.
/// </summary>
internal sealed class Reconstruct(ICalibrationSource calibration, int batchSize, int samples, string modelName, AdaRound.Settings settings) : IPass
{
    public string Name => "reconstruct";
    public PassContract Contract { get; } = new([Stages.Fitted], [], [Stages.LinearsLowered, Stages.PortableEmitted]);

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var g = model.Graph;
        var modules = plan.Weights
            .Where(s => s.Module.StartsWith("attention ", StringComparison.Ordinal) || s.Module.StartsWith("mlp ", StringComparison.Ordinal))
            .GroupBy(s => s.Module).ToList();
        int done = 0, changed = 0;
        var order = g.Nodes.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i);
        context.Progress?.Report(new ProgressReport("reconstruction", 0, modules.Count, "modules"));
        foreach (var module in modules)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            string? why = Optimize(model, plan, module.Key, module.ToList(), order, context);
            if (why is null) changed++;
            else context.Info($"{module.Key}: kept round-to-nearest ({why})");
            context.Progress?.Report(new ProgressReport("reconstruction", ++done, modules.Count, "modules"));
        }
        return changed > 0 ? PassResult.Changed : PassResult.Unchanged;
    }

    /// <summary>Optimizes one module; null when its codes changed, else why not.</summary>
    private string? Optimize(Model model, QuantizationPlan plan, string name, List<QuantizationSite> weights, Dictionary<Node, int> order, PassContext context)
    {
        var chosen = weights.Where(w => w.Parameters is IChoosableRounding and IIntegerGrid).ToList();
        if (chosen.Count == 0) return "its weight quantizers offer no choice of rounding";
        var linears = chosen.SelectMany(w => w.Uses.Select(u => u.Node)).Where(n => n.OpType is "MatMul" or "Gemm").Distinct().OrderBy(n => order[n]).ToList();
        if (linears.Count == 0) return "no linear layer reads its weights";
        var input = linears[0].Inputs.FirstOrDefault(i => i is not null && !i.IsInitializer && !chosen.Any(w => w.Value == i));
        if (input is null) return $"'{linears[0].Name}' has no activation input";
        // Start where the module's data enters: before the layout changes (nn.MultiheadAttention's
        // batch-first → sequence-first Transpose) that only the module reads.
        while (input.Producer is { OpType: "Transpose" or "Reshape" or "Squeeze" or "Unsqueeze" } p && p.Inputs[0] is { IsInitializer: false } data && data.Consumers.Count == 1)
            input = data;
        var output = ModuleOutput(linears[^1]);

        ModuleGraph cut;
        try { cut = ModuleGraph.Extract(model, [input], [output], name); }
        catch (OnnxViTQException e) { return e.Message; }
        var two = ValueShapes.Probe(model, [input, output], modelName, batch: 2);
        var three = ValueShapes.Probe(model, [input, output], modelName, batch: 3);
        int n = Math.Min(samples, calibration.Count);
        var x = Capture(model, input, two.Of(input), three.Of(input), n);
        var y = Capture(model, output, two.Of(output), three.Of(output), n);
        if (x is null || y is null) return $"'{(x is null ? input : output).Name}' does not hold whole samples along its first axis";

        var grids = chosen.Select(w =>
        {
            var grid = (IIntegerGrid)w.Parameters!;
            return (w.Name, new WeightGrid(grid.Scales.ToArray(), grid.ZeroPoints.ToArray(), grid.Axis, grid.QMin, grid.QMax));
        }).ToList();
        // Uniform per-tensor activations read inside the module are simulated while it is optimized; other kinds stay float there (no differentiable form yet).
        var inside = cut.Model.Graph.Nodes.Select(n => n.Name).ToHashSet();
        var activations = plan.Activations
            .Where(a => a.Parameters is IIntegerGrid { Axis: null, Codes: null } && a.Uses.Any(u => inside.Contains(u.Node.Name)))
            .Select(a =>
            {
                var grid = (IIntegerGrid)a.Parameters!;
                return new ActivationGrid(a.Name, a.Uses.Where(u => inside.Contains(u.Node.Name)).Select(u => (u.Node.Name, u.InputIndex)).ToList(),
                    grid.Scales[0], grid.ZeroPoints[0], grid.QMin, grid.QMax);
            }).ToList();
        var progress = context.Progress is { } report
            ? new Steps(p => report.Report(new ProgressReport($"reconstruction: {name}", p.Step, settings.Iterations, $"steps, output error {p.Error:G3}")))
            : null;
        AdaRound.Result result;
        // A module the engine cannot run (an op without a rule, a gradient graph ONNX Runtime refuses) keeps its
        // rounding; the model still quantizes.
        try { result = AdaRound.Optimize(cut, grids, [x], y, settings, progress, activations); }
        catch (OnnxViTQException e) { return e.Message; }
        catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException e) { return $"ONNX Runtime failed running its optimization: {OrtRuntime.FirstLine(e.Message)}"; }
        foreach (var site in chosen)
        {
            var codes = result.Codes[site.Name];
            int flipped = codes.Zip(((IIntegerGrid)site.Parameters!).Codes!, (a, b) => a != b ? 1 : 0).Sum();
            plan.Update(site.WithNote($"AdaRound: {flipped} of {codes.Length} codes rounded the other way") with
            {
                Parameters = ((IChoosableRounding)site.Parameters!).WithCodes(codes),
            });
        }
        context.Info($"{name}: AdaRound on {string.Join(", ", chosen.Select(w => $"'{w.Name}'"))} with {activations.Count} uniform activation(s) simulated, {n} samples, {settings.Iterations} steps, " +
                     $"output error {result.FirstLoss:G3} → {result.LastLoss:G3} (soft rounding at the start → hard at the end), {result.Elapsed.TotalSeconds:0.0} s");
        return null;
    }

    /// <summary>Synchronous (the BCL's Progress posts to the thread pool, out of order).</summary>
    private sealed class Steps(Action<(int Step, double Error)> report) : IProgress<(int Step, double Error)>
    {
        public void Report((int Step, double Error) value) => report(value);
    }

    /// <summary>The last linear layer's output, carried through its bias Add and any reshapes/transposes
    /// up to where the module's result is used otherwise (the residual Add).</summary>
    private static Value ModuleOutput(Node last)
    {
        var v = last.Output();
        while (!v.IsGraphOutput && v.Consumers.Where(u => u.Node.OpType != "Shape").ToList() is [var only])
        {
            var next = only.Node;
            bool bias = next.OpType == "Add" && next.Inputs.Any(i => i is { IsInitializer: true });
            if (!(bias || next.OpType is "Reshape" or "Transpose")) break;
            v = next.Output();
        }
        return v;
    }

    /// <summary>The value on the first <paramref name="n"/> calibration samples, samples along axis 0, or
    /// null when it is laid out otherwise (probed at batches 2 and 3: only axis 0 may grow, in proportion).</summary>
    private AdaRound.Batch? Capture(Model model, Value value, long[] probed, long[] atThree, int n)
    {
        if (probed.Length == 0 || probed.Length != atThree.Length || probed[0] % 2 != 0 || probed[0] / 2 * 3 != atThree[0]
            || !probed.Skip(1).SequenceEqual(atThree.Skip(1))) return null;
        var batches = PlanOutputs.RunValue(model, value.Name, calibration, batchSize, n, modelName);
        var data = batches.SelectMany(b => b).ToArray();
        long perSample = probed.Aggregate(1L, (a, d) => a * d) / 2;
        if (data.Length != perSample * n || n < 2) return null;
        // Proportional shapes do not make a layout: nn.MultiheadAttention's [tokens·batch, dim] rows
        // interleave the samples. Two samples in the other order must give the halves swapped.
        var swapped = PlanOutputs.RunValue(model, value.Name, calibration.Skip(1).Take(1).Concat(calibration.Take(1)), 2, 2, modelName).SelectMany(b => b).ToArray();
        float tolerance = 1e-3f * Math.Max(1e-6f, data.Take((int)(2 * perSample)).Max(MathF.Abs));
        for (long i = 0; i < perSample; i++)
            if (MathF.Abs(swapped[i] - data[perSample + i]) > tolerance || MathF.Abs(swapped[perSample + i] - data[i]) > tolerance) return null;
        return new AdaRound.Batch(data, [probed[0] / 2 * n, .. probed.Skip(1)], n);
    }
}
