using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Search;

/// <summary>A module's chosen width and its sensitivity at every candidate width.</summary>
internal sealed record ModuleBitChoice(string Module, long Weights, int Bits, IReadOnlyDictionary<int, double> Sensitivity);

/// <summary>The choices of <see cref="AllocateModuleBits"/>, module by module, and what their sensitivity is (for reports).</summary>
internal sealed record ModuleBitChoices(IReadOnlyList<ModuleBitChoice> Modules, double AverageBits, string Score);

/// <summary>How a module's sensitivity at a width is scored (pass option <c>score</c>).</summary>
internal enum ModuleScore
{
    /// <summary><c>kl</c>: mean KL of the whole model's class distribution to FP32's with the
    /// module alone quantized at the width.</summary>
    ModelKl,

    /// <summary><c>nuclear</c>: Liu et al.'s ‖Y‖_* × the module output's squared error with the
    /// module alone quantized at the width.</summary>
    NuclearOutputError,
}

/// <summary>
/// Liu et al. 2021's mixed precision: every MSA and MLP module ("attention i", "mlp i") gets one
/// bit width for all its weights and activations, chosen to minimise the summed sensitivity under
/// the average <paramref name="averageBits"/> (weighted by each module's weight count), exactly
/// (<see cref="BitAllocation"/>). A module's sensitivity at b bits is measured with that module
/// alone quantized at b bits — every one of its quantizers, the attention products' operands
/// included — and the rest of the model in FP32, run by ONNX Runtime on the first
/// <see cref="PlanCheck.Samples"/> calibration samples:
/// <list type="bullet">
/// <item><see cref="ModuleScore.ModelKl"/> (the default): the mean KL of the model's class
/// distribution to FP32's. Summing it over modules is the usual second-order additivity
/// assumption, and it sees how an error grows through the layers after the module.</item>
/// <item><see cref="ModuleScore.NuclearOutputError"/> (Liu et al.): ‖Y‖_* (nuclear norm of the
/// module's FP32 output Y — its last linear layer's output — on the calibration rows) × the
/// mean squared error per row of Y (only the nodes Y depends on are run).</item>
/// </list>
/// Why KL by default, measured on vit W6A6-average: the nuclear-norm score rated the first
/// attention module the least sensitive by far (its output is small) and gave it 4 bits: 0.60 pt
/// lost where uniform 6 bits lost 0.05; the KL score gave it 7 bits and lost −0.15. The earlier
/// form of the nuclear score, which summed each linear layer's own output error and so missed the
/// attention products, gave it 5 bits and lost 1.05.
/// Other sites (patch embedding, head, the image) keep their bits and are outside the average.
/// Runs after calibration and before fitting: it sets the sites' bit widths, fit-quantizers fits.
/// </summary>
internal sealed class AllocateModuleBits(int minBits, int maxBits, double averageBits, PlanCheck check, ModuleScore score = ModuleScore.ModelKl) : IPass
{
    public const int MaxRows = 256;

    public string Name => "mixed-precision";
    public PassContract Contract { get; } = new([Stages.QuantizersAssigned, Stages.Statistics], [Stages.WidthsAllocated], [Stages.LayerNormFolded, Stages.Fitted]);

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
        int runs = modules.Count * (maxBits - minBits + 1) + (score == ModuleScore.ModelKl ? 1 : modules.Count), done = 0;
        void Ran() => context.Progress?.Report(new ProgressReport("mixed precision", ++done, runs, "model runs"));
        context.Progress?.Report(new ProgressReport("mixed precision", 0, runs, "model runs"));
        // The FP32 outputs the KL score compares with; the nuclear score takes each module's own output.
        float[][] fp32 = score == ModuleScore.ModelKl ? check.Reference(model) : [];
        if (score == ModuleScore.ModelKl) Ran();
        for (int i = 0; i < modules.Count; i++)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            candidates.Add(Sensitivity(model, modules[i].Key, modules[i].ToList(), plan, stats, fit, order, fp32, Ran));
        }
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
        string measured = score == ModuleScore.ModelKl
            ? $"the model's mean KL to FP32 with the module alone quantized at the width ({check.Samples} calibration samples)"
            : $"nuclear norm of the module's output × its squared error per row with the module alone quantized at the width ({check.Samples} calibration samples)";
        context.Set(new ModuleBitChoices(choices, average, measured));
        context.Info($"mixed precision: {string.Join(", ", choices.Select(c => $"{c.Module} {c.Bits}"))} (average {average:0.###} bits over {total} weights)");
        return PassResult.Unchanged;
    }

    private BitAllocation.Module Sensitivity(Model model, string module, List<QuantizationSite> sites, QuantizationPlan plan, ActivationStatistics stats,
        FitContext fit, Dictionary<Node, int> order, float[][] fp32, Action ran)
    {
        long weights = sites.Where(s => s.IsWeight).Sum(s => (long)WeightTensor.Read(s).Values.Length);
        var layers = new List<(WeightedLinear Shape, float[] X, int Rows)>();
        foreach (var weight in sites.Where(s => s.IsWeight))
            foreach (var use in weight.Uses.Where(u => u.InputIndex == 1))
            {
                var x = use.Node.Input(0);
                if (x is null || !plan.TryGet(x, out var activation) || activation.IsWeight || !stats.Has(x, ObserverKeys.Rows)) continue;
                var probe = use.Node.OpType is "MatMul" or "Gemm" && use.Node.GetInt("transA", 0) == 0 ? WeightedLinear.Of(use.Node, activation, weight) : null;
                var rows = stats.Get<RowSampleObserver>(x, ObserverKeys.Rows);
                if (probe is null || rows.Width != probe.K || rows.Count == 0) continue;
                int count = Math.Min(rows.Count, MaxRows);
                layers.Add((probe, rows.Rows[..(count * rows.Width)].ToArray(), count));
            }
        var sensitivity = new Dictionary<int, double>();
        if (layers.Count == 0)
        {
            for (int i = 0; i < maxBits - minBits + 1 + (score == ModuleScore.ModelKl ? 0 : 1); i++) ran();
            return new BitAllocation.Module(module, Math.Max(weights, 1), Enumerable.Range(minBits, maxBits - minBits + 1).ToDictionary(b => b, _ => 0.0));
        }
        var last = layers.MaxBy(l => order.GetValueOrDefault(l.Shape.Node, -1));
        string output = last.Shape.Node.Output().Name;
        double nuclear = 0;
        List<float[]>? reference = null;
        if (score == ModuleScore.NuclearOutputError)
        {
            nuclear = NuclearNorm.Of(last.Shape.Multiply(last.X, last.Rows, last.Shape.W), last.Rows, last.Shape.N);
            reference = PlanOutputs.RunValue(model, output, check.Source, check.BatchSize, check.Samples, check.ModelName);
            ran();
        }
        for (int b = minBits; b <= maxBits; b++)
        {
            if (sites.Any(s => s.Spec is not { } spec || b < spec.KindInfo.MinBits || b > spec.KindInfo.MaxBits)) { ran(); continue; }
            var alone = new QuantizationPlan();
            foreach (var site in sites)
            {
                var narrowed = site with { Spec = site.Spec! with { Bits = b } };
                alone.Add(narrowed with { Parameters = narrowed.Spec.KindInfo.Fit(narrowed, fit) });
            }
            sensitivity[b] = reference is null
                ? check.Measure(model, alone, fp32).MeanKl
                : nuclear * OutputErrorPerRow(reference, PlanOutputs.RunValue(PlanOutputs.Emitted(model, alone), output, check.Source, check.BatchSize, check.Samples, check.ModelName), last.Shape.N);
            ran();
        }
        return new BitAllocation.Module(module, Math.Max(weights, 1), sensitivity);
    }

    private static double OutputErrorPerRow(List<float[]> reference, List<float[]> quantized, int width)
    {
        double se = 0;
        long elements = 0;
        for (int i = 0; i < reference.Count; i++)
        {
            var (y, yq) = (reference[i], quantized[i]);
            for (int j = 0; j < y.Length; j++) { double d = yq[j] - y[j]; se += d * d; }
            elements += y.Length;
        }
        return elements == 0 ? 0 : se * width / elements;
    }
}
