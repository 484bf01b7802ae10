using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Analysis;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Reparameterize;

/// <summary>
/// Reparameterization (RepQ-ViT, DopQ-ViT MOSF, AOCQ channel balancing — by <see cref="IFoldPolicy"/>):
/// for every LayerNorm whose output feeds only linear layers (<see cref="LayerNormGroups"/>), the
/// policy picks a per-channel map y' = (y − δ)/r from the post-LN sites' calibration statistics,
/// <see cref="ChannelAffineFold"/> rewrites the FP32 model exactly, and the post-LN sites get the
/// policy's per-tensor quantizer. Their statistics are mapped to y' (observers that cannot be
/// mapped, such as histograms, are dropped), and the linears' weight sites are refitted later.
/// A LayerNorm that cannot be rewritten is left alone and its sites say why.
/// </summary>
internal sealed class FoldLayerNormScales(IFoldPolicy policy, string modelName) : IPass
{
    public string Name => $"fold-layernorm-{policy.Name}";
    public PassContract Contract { get; } = new([Stages.QuantizersAssigned, Stages.Statistics], [Stages.LayerNormFolded], [Stages.Fitted]);

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var stats = context.Get<ActivationStatistics>();
        int folded = 0;
        foreach (var group in LayerNormGroups.Find(model, modelName))
        {
            var sites = group.Linears.Select(l => plan.TryGet(l.Input, out var s) ? s : null).OfType<QuantizationSite>().Distinct().ToList();
            if (sites.Count == 0) continue;
            if (!group.Foldable)
            {
                foreach (var s in sites) plan.Update(s.WithNote($"not reparameterized: LayerNorm '{group.Name}': {group.Refusal}"));
                context.Info($"LayerNorm '{group.Name}' not reparameterized: {group.Refusal}");
                continue;
            }
            if (sites.Any(s => !stats.Has(s.Value, ObserverKeys.Channels)))
                throw new InvalidOperationException($"sites reading LayerNorm '{group.Name}' have no per-channel statistics (collect statistics before folding)");
            var inputs = Inputs(group, sites, plan, stats);
            var decision = policy.Decide(inputs);
            ChannelAffineFold.Apply(model, group, decision.Scale, decision.Shift);
            folded++;
            foreach (var site in sites)
            {
                MapStatistics(stats, site, decision);
                // A kind that takes the derived per-tensor grid gets it; other kinds are refitted on the
                // mapped statistics: only min/max, per-channel statistics and row samples survive the mapping.
                var derived = site.Spec is { KindInfo: IAcceptsDerivedGrid kind } s ? kind.FromDerivedGrid(decision.Quantizer, s) : null;
                if (derived is null && site.Spec is { } spec && spec.KindInfo.Observers(site).FirstOrDefault(r => !stats.Has(site.Value, r.Key)) is { } missing)
                    throw new OnnxViTQException($"'{site.Name}': quantizer '{spec.Kind}' needs '{missing.Key}' statistics, which a LayerNorm reparameterization " +
                                                $"cannot carry over; give {site.Role.Name()} 'uniform', 'per-token' or a kind with range=minmax in this recipe");
                var updated = site with { Parameters = derived };
                plan.Update(updated.WithNote($"{policy.Name}: folded into LayerNorm '{group.Name}' ({decision.Summary}; r in [{decision.Scale.Min():g3}, {decision.Scale.Max():g3}])"));
            }
            // The linears' weights changed: their quantizers are fitted afterwards.
            foreach (var linear in group.Linears)
                if (plan.TryGet(linear.Node.Inputs[1]!, out var w)) plan.Update(w with { Parameters = null });
        }
        context.Info($"{policy.Name}: reparameterized {folded} LayerNorms");
        return new PassResult(folded > 0);
    }

    private static FoldInputs Inputs(LayerNormGroup group, List<QuantizationSite> sites, QuantizationPlan plan, ActivationStatistics stats)
    {
        int n = group.Channels;
        var min = Enumerable.Repeat(float.PositiveInfinity, n).ToArray();
        var max = Enumerable.Repeat(float.NegativeInfinity, n).ToArray();
        var meanSquare = new double[n];
        foreach (var site in sites)
        {
            var o = stats.Get<PerChannelMinMaxObserver>(site.Value, ObserverKeys.Channels);
            for (int c = 0; c < n; c++)
            {
                min[c] = Math.Min(min[c], o.Min[c]);
                max[c] = Math.Max(max[c], o.Max[c]);
                meanSquare[c] = Math.Max(meanSquare[c], o.MeanSquare[c]);
            }
        }
        var weights = group.Linears.Select(l => l.Node.Inputs[1]!).Distinct().Select(w => KByN(group, w)).ToArray();
        var weightBits = group.Linears.Select(l => plan.TryGet(l.Node.Inputs[1]!, out var s) ? s.Spec?.Bits ?? 8 : 8).Min();
        return new FoldInputs(min, max, meanSquare, weights, sites.Min(s => s.Spec?.Bits ?? 8), weightBits, ShiftAllowed: !group.ZeroPadded && group.LayerNorm.Beta is not null);
    }

    /// <summary>A linear's weight as [K, N] (K: the LayerNorm's channels).</summary>
    private static float[] KByN(LayerNormGroup group, Value weight)
    {
        Constants.TryGetTensor(weight, out var t);
        var node = group.Linears.First(l => ReferenceEquals(l.Node.Inputs[1], weight)).Node;
        var w = t.ToFloats();
        if (node.OpType == "Gemm" && node.GetInt("transB", 0) == 1) return TensorOps.Transpose(t, null).ToFloats();
        return w;
    }

    private static void MapStatistics(ActivationStatistics stats, QuantizationSite site, FoldDecision d)
    {
        var channels = stats.Get<PerChannelMinMaxObserver>(site.Value, ObserverKeys.Channels).MapChannels(d.Scale, d.Shift);
        stats.Replace(site.Value, ObserverKeys.Channels, channels);
        if (stats.Has(site.Value, ObserverKeys.Rows))
            stats.Replace(site.Value, ObserverKeys.Rows, stats.Get<RowSampleObserver>(site.Value, ObserverKeys.Rows).MapChannels(d.Scale, d.Shift));
        foreach (var (key, _) in stats.For(site.Value).ToList())
            if (key is not (ObserverKeys.Channels or ObserverKeys.Rows)) stats.Remove(site.Value, key);
        stats.Replace(site.Value, ObserverKeys.MinMax, MinMaxObserver.FromRange(channels.Min.Min(), channels.Max.Max(), channels.Rows * channels.Channels, site.Name));
    }
}
