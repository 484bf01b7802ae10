using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// Analysis: warns when a recipe without outlier handling quantizes post-LayerNorm activations
/// whose channel ranges say it will collapse. A site counts when its quantizer is one integer grid
/// for the whole tensor, its LayerNorm was not reparameterized in this run (a fold is outlier
/// handling), and the median channel's range spans fewer than <see cref="MinSteps"/> steps of that
/// grid: the typical channel is then rounded to a handful of values while a few outlier channels
/// set the range — what ImageNet ViTs and the outlier variants do to minmax and liu2021 at 4 bits.
/// The warning names the sites, the ratio and the recipes that handle outliers.
/// </summary>
internal sealed class WarnOnOutlierChannels : IPass
{
    /// <summary>Below this many steps across the median channel's range, the channel is lost.</summary>
    public const double MinSteps = 4;

    public string Name => "warn-outlier-channels";
    public PassContract Contract { get; } = new([Stages.Fitted, Stages.Statistics], []);

    public PassResult Run(Model model, PassContext context)
    {
        if (context.Holds(Stages.LayerNormFolded)) return PassResult.Unchanged;
        var plan = context.Get<QuantizationPlan>();
        var stats = context.Get<ActivationStatistics>();
        var found = new List<(QuantizationSite Site, double Ratio, double Steps)>();
        foreach (var site in plan.Activations.Where(s => s.Role == TensorRole.PostLayerNorm))
        {
            if (site.Parameters is not IIntegerGrid { Axis: null } grid || grid.Scales.Count != 1) continue;
            if (!stats.Has(site.Value, ObserverKeys.Channels)) continue;
            var channels = stats.Get<PerChannelMinMaxObserver>(site.Value, ObserverKeys.Channels);
            if (channels.Channels < 4) continue;
            var ranges = Enumerable.Range(0, channels.Channels).Select(c => (double)channels.Max[c] - channels.Min[c]).Order().ToArray();
            double median = ranges[ranges.Length / 2];
            if (median <= 0) continue;
            double steps = median / grid.Scales[0];
            if (steps < MinSteps) found.Add((site, ranges[^1] / median, steps));
        }
        if (found.Count == 0) return PassResult.Unchanged;
        var worst = found.MinBy(f => f.Steps);
        context.Warn($"{found.Count} post-LayerNorm activation{(found.Count == 1 ? "" : "s")} carry outlier channels this recipe quantizes per tensor: " +
                     $"worst '{worst.Site.Name}'{(worst.Site.Module.Length > 0 ? $" ({worst.Site.Module})" : "")}, channels up to {worst.Ratio:0}× the median channel's range, " +
                     $"which gets {worst.Steps:0.#} steps at {worst.Site.Parameters!.Bits} bits: expect the accuracy to suffer (models like this fall to chance at 4 bits). " +
                     "Recipes that handle outlier channels: repq, dopq, aocq (LayerNorm folds), adfq (per-token with outlier split)");
        foreach (var (site, ratio, steps) in found)
            plan.Update(site.WithNote($"outlier channels: up to {ratio:0}× the median channel's range, which spans {steps:0.#} steps of the per-tensor grid"));
        return PassResult.Unchanged;
    }
}
