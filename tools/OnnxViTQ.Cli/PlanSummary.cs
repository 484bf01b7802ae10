using System.Globalization;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Cli;

/// <summary>The plan in a few lines for the quantize summary: per role, how many tensors got
/// which quantizer (kind, bits, granularity as actually fitted — a weight without a channel axis
/// says per-tensor), with the mean measured SQNR.</summary>
internal static class PlanSummary
{
    public static IEnumerable<(string Label, string Text)> Lines(QuantizationPlan plan)
    {
        foreach (var role in plan.Sites.GroupBy(s => s.Role).OrderBy(g => g.Key))
        {
            var parts = role.GroupBy(s => s.Parameters is { } p ? $"{p.Kind} {p.Bits}-bit {p.Granularity.Name()}" : "not fitted")
                .OrderByDescending(g => g.Count())
                .Select(g => $"{g.Count()} {g.Key}{Extra(g.ToList())}");
            var errors = role.Where(s => s.Error is { SqnrDb: var d } && double.IsFinite(d)).Select(s => s.Error!.SqnrDb).ToList();
            string sqnr = errors.Count > 0 ? string.Create(CultureInfo.InvariantCulture, $"; SQNR mean {errors.Average():0.0} dB, worst {errors.Min():0.0} dB") : "";
            int unrecognised = role.Count(s => s.Notes.Any(n => n.StartsWith("role not recognised")));
            string note = unrecognised > 0 ? $"; {unrecognised} not recognised (baseline quantizer, see --report)" : "";
            yield return (role.Key.Name(), string.Join(", ", parts) + sqnr + note);
        }
    }

    /// <summary>What exclusions kept in float, by pattern: the nodes (and which input where only
    /// some are), or null when nothing was excluded.</summary>
    public static string? Excluded(QuantizationPlan plan) => plan.Excluded.Count == 0 ? null
        : string.Join("; ", plan.Excluded.GroupBy(e => e.Pattern).Select(g =>
            $"'{g.Key}': {string.Join(", ", g.GroupBy(e => e.Node).Select(n => n.Key))} ({g.Count()} input{(g.Count() == 1 ? "" : "s")})"));

    private static string Extra(IReadOnlyList<QuantizationSite> sites)
    {
        var outliers = sites.Select(s => s.Parameters).OfType<OutlierSplitQuantizer>().ToList();
        return outliers.Count == 0 ? ""
            : string.Create(CultureInfo.InvariantCulture, $" ({100 * outliers.Average(o => o.OutlierRatio):0.###} % outliers on average)");
    }
}
