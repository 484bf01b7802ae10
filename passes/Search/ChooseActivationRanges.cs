using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Search;

/// <summary>
/// Chooses, per activation role, where the interval search starts: the recipe's clipped range
/// (<c>range=percentile</c>) or the observed one (percentile 100: the calibration min and max, from
/// the same histogram), whichever brings the whole quantized model closer to FP32 on the check
/// samples (<see cref="PlanCheck"/>: lower mean KL of the class distributions). One sweep over the
/// roles in plan order, each decided with the choices before it in place: one ONNX Runtime run of
/// the FP32 model, one of the plan as fitted, one per role.
/// Why: neither start is right at every width. Measured on the reference models, clipping every
/// activation at the 99.99th percentile cost vit 0.40 pt at W8A8 where min/max lost nothing (the
/// attention products' operands lose their largest values), while at W4A4 min/max cost 3.4 pt and
/// the percentile 2.05; the search only re-scales linear layers' inputs within [α, β]·Δ₀, so the
/// start is what the attention products keep. Liu et al. start from the max (METHODS.md).
/// Only per-tensor sites whose step the search moves (uniform grids) and whose range is a
/// percentile are candidates; other quantizers and reparameterized sites are left as they are.
/// Run it after fit-quantizers, before the search.
/// </summary>
internal sealed class ChooseActivationRanges(PlanCheck check, bool measureBefore = false) : IPass
{
    public string Name => "choose-ranges";
    public PassContract Contract { get; } = new([Stages.Fitted, Stages.Statistics], [], [Stages.LinearsLowered, Stages.PortableEmitted]);

    /// <summary>The observed range as a percentile: the histogram's min and max.</summary>
    private const string Observed = "100";

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var stats = context.Get<ActivationStatistics>();
        if (measureBefore && !context.TryGet<LayerOutputErrorsBefore>(out _))
            context.Set(new LayerOutputErrorsBefore(LayerOutputErrors.Measure(plan, stats)));
        var roles = plan.Activations.Where(IsCandidate).GroupBy(s => s.Role).Select(g => (Role: g.Key, Sites: g.Select(s => s.Value).ToList())).ToList();
        if (roles.Count == 0)
        {
            context.Info("range choice: no activation with range=percentile, nothing to choose");
            return PassResult.Unchanged;
        }
        int steps = roles.Count + 2;
        context.Progress?.Report(new ProgressReport("choosing activation ranges", 0, steps, "model runs"));
        var reference = check.Reference(model);
        context.Progress?.Report(new ProgressReport("choosing activation ranges", 1, steps, "model runs"));
        var current = check.Measure(model, plan, reference);
        context.Progress?.Report(new ProgressReport("choosing activation ranges", 2, steps, "model runs"));
        var fit = new FitContext(stats);
        var chosen = new List<string>();
        double start = current.MeanKl;
        for (int r = 0; r < roles.Count; r++)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            var (role, values) = roles[r];
            var before = values.Select(plan.For).ToList();
            var observed = before.Select(s => WithObservedRange(s, fit)).ToList();
            foreach (var site in observed) plan.Update(site);
            var candidate = check.Measure(model, plan, reference);
            context.Progress?.Report(new ProgressReport("choosing activation ranges", r + 3, steps, "model runs"));
            if (candidate.MeanKl < current.MeanKl)
            {
                foreach (var site in observed)
                    plan.Update(site.WithNote($"range choice: {role.Name()} activations take their observed min/max instead of the {before[0].Spec!.Option("percentile")}th percentile (model mean KL to FP32 {current.MeanKl:g4} → {candidate.MeanKl:g4} on {reference.Length} calibration samples)"));
                chosen.Add($"{role.Name()} ({values.Count})");
                current = candidate;
            }
            else
            {
                foreach (var site in before) plan.Update(site);
            }
        }
        context.Info(chosen.Count == 0
            ? $"range choice: every role keeps its percentile range (mean KL to FP32 {start:g4} on {reference.Length} calibration samples; the observed range was no closer for any)"
            : $"range choice: observed min/max for {string.Join(", ", chosen)}; mean KL to FP32 {start:g4} → {current.MeanKl:g4} on {reference.Length} calibration samples");
        return PassResult.Unchanged;
    }

    /// <summary>A per-tensor site whose step the interval search moves (<see cref="IAdjustableStep"/>),
    /// fitted from a percentile range that is not already the observed one.</summary>
    private static bool IsCandidate(QuantizationSite site) =>
        site.Spec is { } spec && spec.KindInfo.Options.Any(o => o.Name == "range") && spec.Option("range") == "percentile" && spec.Option("percentile") != Observed
        && site.Parameters is { Granularity: Granularity.PerTensor } and IAdjustableStep;

    private static QuantizationSite WithObservedRange(QuantizationSite site, FitContext fit)
    {
        var spec = site.Spec!;
        var options = new Dictionary<string, string>(spec.Options) { ["percentile"] = Observed };
        var observed = QuantizerRegistry.Spec(spec.Kind, spec.Bits, site.Role, options, site.Name);
        var refit = site with { Spec = observed };
        return refit with { Parameters = observed.KindInfo.Fit(refit, fit) };
    }
}
