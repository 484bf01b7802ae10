using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Search;

/// <summary>A module's chosen width and its sensitivity at every candidate width.</summary>
internal sealed record ModuleBitChoice(string Module, long Weights, int Bits, IReadOnlyDictionary<int, double> Sensitivity);

/// <summary>The choices of <see cref="AllocateModuleBits"/>, module by module.</summary>
internal sealed record ModuleBitChoices(IReadOnlyList<ModuleBitChoice> Modules, double AverageBits);

/// <summary>
/// Liu et al. 2021's mixed precision: every MSA and MLP module ("attention i", "mlp i") gets one
/// bit width for all its weights and activations. Sensitivity of a module at b bits =
/// ‖Y‖_* (nuclear norm of the FP32 output of its last linear layer on the calibration rows) ×
/// Σ over its linear layers of the mean squared output error with input and weight quantized at
/// b bits. The widths minimising the summed sensitivity under the average <paramref name="averageBits"/>
/// (weighted by each module's weight count) are chosen exactly (<see cref="BitAllocation"/>).
/// Other sites (patch embedding, head, the image) keep their bits and are outside the average.
/// Runs after calibration and before fitting: it sets the sites' bit widths, fit-quantizers fits.
/// </summary>
internal sealed class AllocateModuleBits(int minBits, int maxBits, double averageBits) : IPass, IPassContract
{
    public const int MaxRows = 256;

    public string Name => "mixed-precision";
    public IReadOnlyList<Type> Requires => [typeof(QuantizersAssigned), typeof(ActivationStatistics)];
    public IReadOnlyList<Type> Produces => [];

    public PassResult Run(Model model, PassContext context)
    {
        if (minBits < 2 || maxBits > 8 || minBits > maxBits) throw new OnnxViTQException($"mixed precision: widths {minBits}..{maxBits} must lie in 2..8");
        if (averageBits < minBits || averageBits > maxBits)
            throw new OnnxViTQException($"mixed precision: an average of {averageBits} bits is outside the candidate widths {minBits}..{maxBits}");
        var plan = context.Get<QuantizationPlan>();
        var stats = context.Get<ActivationStatistics>();
        var fit = new FitContext(stats);
        var order = model.Graph.Nodes.Select((n, i) => (n, i)).ToDictionary(x => x.n, x => x.i);
        var modules = plan.Sites.Where(s => s.Module.StartsWith("attention ", StringComparison.Ordinal) || s.Module.StartsWith("mlp ", StringComparison.Ordinal))
            .GroupBy(s => s.Module).OrderBy(g => g.Min(s => s.Uses.Count == 0 ? int.MaxValue : s.Uses.Min(u => order.GetValueOrDefault(u.Node, int.MaxValue)))).ToList();
        var candidates = new List<BitAllocation.Module>();
        for (int i = 0; i < modules.Count; i++)
        {
            context.Progress?.Report(new ProgressReport("mixed precision", i, modules.Count, "modules"));
            candidates.Add(Sensitivity(modules[i].Key, modules[i].ToList(), plan, stats, fit, order));
        }
        context.Progress?.Report(new ProgressReport("mixed precision", modules.Count, modules.Count, "modules"));
        var bits = BitAllocation.Solve(candidates, averageBits)
                   ?? throw new OnnxViTQException($"mixed precision: no choice of widths in {minBits}..{maxBits} meets an average of {averageBits} bits");
        var choices = new List<ModuleBitChoice>();
        for (int i = 0; i < modules.Count; i++)
        {
            foreach (var site in modules[i])
            {
                var current = plan.For(site.Value);
                plan.Update(current.WithNote($"mixed precision: {modules[i].Key} at {bits[i]} bits") with { Spec = current.Spec! with { Bits = bits[i] } });
            }
            choices.Add(new ModuleBitChoice(modules[i].Key, candidates[i].Weights, bits[i], candidates[i].Sensitivity));
        }
        long total = choices.Sum(c => c.Weights);
        double average = total == 0 ? 0 : choices.Sum(c => (double)c.Bits * c.Weights) / total;
        context.Set(new ModuleBitChoices(choices, average));
        context.Info($"mixed precision: {string.Join(", ", choices.Select(c => $"{c.Module} {c.Bits}"))} (average {average:0.###} bits over {total} weights)");
        return PassResult.Unchanged;
    }

    private BitAllocation.Module Sensitivity(string module, List<QuantizationSite> sites, QuantizationPlan plan, ActivationStatistics stats, FitContext fit, Dictionary<Node, int> order)
    {
        long weights = sites.Where(s => s.IsWeight).Sum(s => (long)WeightTensor.Read(s).Values.Length);
        var layers = new List<(QuantizationSite Activation, QuantizationSite Weight, float[] X, int Rows, WeightedLinear Shape, float[] Y)>();
        foreach (var weight in sites.Where(s => s.IsWeight))
            foreach (var use in weight.Uses.Where(u => u.InputIndex == 1))
            {
                var x = use.Node.Input(0);
                if (x is null || !plan.TryGet(x, out var activation) || activation.IsWeight || !stats.Has(x, ObserverKeys.Rows)) continue;
                var probe = use.Node.OpType is "MatMul" or "Gemm" && use.Node.GetInt("transA", 0) == 0 ? WeightedLinear.Of(use.Node, activation, weight) : null;
                var rows = stats.Get<RowSampleObserver>(x, ObserverKeys.Rows);
                if (probe is null || rows.Width != probe.K || rows.Count == 0) continue;
                int count = Math.Min(rows.Count, MaxRows);
                var xs = rows.Rows[..(count * rows.Width)].ToArray();
                layers.Add((activation, weight, xs, count, probe, probe.Multiply(xs, count, probe.W)));
            }
        var sensitivity = new Dictionary<int, double>();
        if (layers.Count == 0) return new BitAllocation.Module(module, Math.Max(weights, 1), Enumerable.Range(minBits, maxBits - minBits + 1).ToDictionary(b => b, _ => 0.0));
        var last = layers.MaxBy(l => order.GetValueOrDefault(l.Shape.Node, -1));
        double nuclear = NuclearNorm.Of(last.Y, last.Rows, last.Shape.N);
        for (int b = minBits; b <= maxBits; b++)
        {
            if (sites.Any(s => s.Spec is not { } spec || b < spec.KindInfo.MinBits || b > spec.KindInfo.MaxBits)) continue;
            double error = 0;
            foreach (var (activation, weight, xs, count, shape, y) in layers)
            {
                var aq = activation.Spec!.KindInfo.Fit(activation with { Spec = activation.Spec with { Bits = b } }, fit);
                var wq = weight.Spec!.KindInfo.Fit(weight with { Spec = weight.Spec with { Bits = b } }, fit);
                var xq = (float[])xs.Clone();
                aq.Simulate(xq, [count, shape.K]);
                var yq = shape.Multiply(xq, count, shape.Simulated(wq));
                double se = 0;
                for (int i = 0; i < y.Length; i++) { double d = yq[i] - y[i]; se += d * d; }
                error += se / count;
            }
            sensitivity[b] = nuclear * error;
        }
        return new BitAllocation.Module(module, Math.Max(weights, 1), sensitivity);
    }
}
