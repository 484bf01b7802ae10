using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxViTQ.Passes;
using OnnxViTQ.Quantization;

namespace OnnxViTQ;

/// <summary>A machine-readable record of a quantization run: every site with its role, module,
/// quantizer, parameters and measured error, plus pass timings and diagnostics.</summary>
internal static class QuantizationReport
{
    public sealed record SiteEntry(string Tensor, string Role, string Module, string Quantizer, int Bits, string Granularity,
        IReadOnlyDictionary<string, object> Parameters, IReadOnlyList<string> Consumers, double? SqnrDb, double? Cosine, IReadOnlyList<string>? Notes);

    public sealed record PassEntry(string Pass, double Seconds, bool Modified);

    /// <summary>A linear layer's output error: X·W against Q(X)·Q(W) on the calibration row sample.</summary>
    public sealed record LayerEntry(string Node, string Input, string Weight, double? OutputSqnrDb, double OutputCosine,
        double? OutputSqnrDbBefore = null, double? OutputCosineBefore = null);

    public sealed record Document(string Model, string Recipe, string RecipeDescription, IReadOnlyList<string> RecipePasses, string Bits,
        long CalibrationSamples, IReadOnlyDictionary<string, int> SitesByRole, IReadOnlyList<string> Unrecognised,
        IReadOnlyList<PassEntry> Passes, IReadOnlyList<string> Diagnostics, IReadOnlyList<SiteEntry> Sites, IReadOnlyList<LayerEntry> Layers,
        MixedPrecisionEntry? MixedPrecision, IReadOnlyList<ExcludedRead>? Excluded, AutoChoice? Auto, FallbackReport? Fallback);

    /// <summary>Mixed precision: the average reached, what the sensitivity is, and every module's width and sensitivity per candidate width.</summary>
    public sealed record MixedPrecisionEntry(double AverageBits, string Score, IReadOnlyList<ModuleEntry> Modules);

    public sealed record ModuleEntry(string Module, long Weights, int Bits, IReadOnlyDictionary<string, double> Sensitivity);

    public static Document Build(string modelName, QuantizationOptions options, QuantizationResult result) => new(
        modelName, result.Recipe.Name, result.Recipe.Description, result.Recipe.Passes.Select(p => p.ToString()).ToList(), options.Bits.ToString(),
        result.CalibrationSamples,
        result.Plan.Sites.GroupBy(s => s.Role).OrderBy(g => g.Key).ToDictionary(g => g.Key.Name(), g => g.Count()),
        result.Plan.Sites.Where(s => s.Notes.Any(n => n.StartsWith("role not recognised"))).Select(s => $"{s.Name}: {s.Notes.First(n => n.StartsWith("role not recognised"))}").ToList(),
        result.Timings.Select(t => new PassEntry(t.Pass, Math.Round(t.Elapsed.TotalSeconds, 3), t.Modified)).ToList(),
        result.Diagnostics.Select(d => d.ToString()).ToList(),
        result.Plan.Sites.Select(Entry).ToList(),
        result.LayerErrors.Select(l => Layer(l, result.LayerErrorsBefore.FirstOrDefault(b => b.Node == l.Node))).ToList(),
        result.ModuleBits is { } mp
            ? new MixedPrecisionEntry(Math.Round(mp.AverageBits, 4), mp.Score, mp.Modules.Select(m => new ModuleEntry(m.Module, m.Weights, m.Bits,
                m.Sensitivity.ToDictionary(kv => kv.Key.ToString(System.Globalization.CultureInfo.InvariantCulture), kv => kv.Value))).ToList())
            : null,
        result.Plan.Excluded.Count > 0 ? result.Plan.Excluded : null,
        result.Auto, result.Fallback);

    private static LayerEntry Layer(LayerOutputError after, LayerOutputError? before) => new(after.Node, after.Activation, after.Weight,
        Db(after.Error.SqnrDb), Math.Round(after.Error.Cosine, 6),
        before is null ? null : Db(before.Error.SqnrDb), before is null ? null : Math.Round(before.Error.Cosine, 6));

    private static double? Db(double v) => double.IsFinite(v) ? Math.Round(v, 3) : null;

    private static SiteEntry Entry(QuantizationSite s) => new(
        s.Name, s.Role.Name(), s.Module, s.Parameters?.Kind ?? s.Spec?.Kind ?? "none", s.Parameters?.Bits ?? s.Spec?.Bits ?? 0,
        s.Granularity?.Name() ?? "", s.Parameters?.Describe() ?? new Dictionary<string, object>(),
        s.Uses.Select(u => u.Node.Name).ToList(),
        s.Error is { } e && double.IsFinite(e.SqnrDb) ? Math.Round(e.SqnrDb, 3) : null,
        s.Error is { } c ? Math.Round(c.Cosine, 6) : null,
        s.Notes.Count > 0 ? s.Notes : null);

    public static void Write(Stream stream, Document document) =>
        JsonSerializer.Serialize(stream, document, new JsonSerializerOptions
        {
            WriteIndented = true,
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        });
}
