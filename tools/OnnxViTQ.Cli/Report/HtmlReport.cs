using System.Globalization;
using System.Net;
using System.Text;
using OnnxViTQ.Observers;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Cli.Report;

/// <summary>FP32 against quantized top-1 on the same data (QDQ run as written); <c>Fused*</c> when
/// ONNX Runtime's fused execution of the quantized file can differ from that, for the <c>FusedReasons</c>.</summary>
internal sealed record AccuracyComparison(string Data, int Samples, double Fp32Top1, double QuantizedTop1, double Agreement,
    double? FusedTop1 = null, double? FusedAgreement = null, IReadOnlyList<string>? FusedReasons = null);

/// <summary>
/// The self-contained HTML report of a quantize run: one file with inline CSS and inline SVG
/// plots, no scripts and no external references, so it opens offline and can be attached to a
/// build. Sections: model, recipe and options, accuracy (when evaluation data was given),
/// per-layer output error, every quantized tensor, histograms of the worst activations with the
/// chosen ranges, per-channel ranges of post-LayerNorm activations, pass timings.
/// </summary>
internal static class HtmlReport
{
    /// <summary>Activation histograms drawn (the lowest-SQNR activations).</summary>
    public const int WorstActivations = 6;

    /// <summary>Post-LayerNorm channel-range plots drawn (the ones with the strongest outlier channels).</summary>
    public const int ChannelPlots = 6;

    public static string Render(QuantizationSummary summary, AccuracyComparison? accuracy)
    {
        var result = summary.Result;
        var doc = QuantizationReport.Build(summary.ModelPath, summary.Options, result);
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        html.Append($"<title>OnnxViTQ report: {E(Path.GetFileName(summary.ModelPath))}</title>\n<style>{Css}</style>\n</head>\n<body>\n");
        html.Append($"<h1>OnnxViTQ quantization report</h1>\n");

        Section(html, "model", "Model", () => KeyValues(html, [
            ("model", summary.ModelPath), ("model size", Paths.Size(new FileInfo(summary.ModelPath).Length)),
            ("output", summary.OutputPath), ("output size", File.Exists(summary.OutputPath) ? Paths.Size(new FileInfo(summary.OutputPath).Length) : "not written"),
            ("quantized nodes", summary.QuantizedNodes.ToString(CultureInfo.InvariantCulture)),
            ("quantized tensors", $"{result.WeightTensors} weights, {result.ActivationTensors} activations"),
            ("tool", $"onnxvitq {typeof(HtmlReport).Assembly.GetName().Version}"),
        ]));
        Section(html, "recipe", "Recipe and options", () =>
        {
            KeyValues(html, [
                ("recipe", $"{doc.Recipe}: {doc.RecipeDescription}"), ("bits", doc.Bits), ("format", summary.Format.Name()),
                ("calibration samples", doc.CalibrationSamples.ToString(CultureInfo.InvariantCulture)),
                ("batch size", summary.Options.BatchSize.ToString(CultureInfo.InvariantCulture)),
                ("percentile", summary.Options.Percentile?.ToString(CultureInfo.InvariantCulture) ?? "recipe default"),
                ("passes", string.Join(" → ", doc.RecipePasses)),
            ]);
            if (result.ModuleBits is { } mp)
            {
                html.Append($"<p>Mixed precision: one width per module, average {F(mp.AverageBits, "0.##")} bits over the modules' weights. Sensitivity at each width: {E(mp.Score)}.</p>\n");
                var widths = mp.Modules.SelectMany(m => m.Sensitivity.Keys).Distinct().Order().ToList();
                Table(html, ["module", "weights", "bits", .. widths.Select(b => $"sensitivity at {b}")],
                    mp.Modules.Select(m => (string[])[m.Module, m.Weights.ToString(CultureInfo.InvariantCulture), m.Bits.ToString(CultureInfo.InvariantCulture),
                        .. widths.Select(b => m.Sensitivity.TryGetValue(b, out var v) ? F(v, "G4") : "")]).ToList(), numericFrom: 1);
            }
            if (doc.Auto is { } auto)
            {
                html.Append($"<p><code>--recipe auto</code> chose {E(auto.Recipe)}: each candidate calibrated on {auto.CalibrationSamples} samples and scored against FP32 on {auto.HeldOutSamples} held-out ones " +
                            $"(least mean KL, then most top-1 agreement){(auto.Lead is { } lead ? $"; {E(auto.Recipe)} {E(lead.ToString())}" : "")}.</p>\n");
                Table(html, ["recipe", "mean KL to FP32", "top-1 agreement", "seconds", "note"],
                    auto.Scores.Select(sc => new[] { sc.Recipe, sc.MeanKl is { } kl ? F(kl, "0.0000") : "", sc.Agreement is { } ag ? Pct(ag) : "", F(sc.Seconds, "0.0"), sc.Note ?? "" }).ToList(), numericFrom: 1);
            }
            if (doc.Fallback is { } fallback)
            {
                html.Append($"<p><code>--max-drop</code> {F(fallback.MaxDrop, "0.##")} pt of {E(fallback.Metric)}: {(fallback.Holds ? "holds" : "not reached")}.</p>\n");
                Table(html, ["step", "loss after it (pt)"], fallback.Steps.Select(st => new[] { st.Action, F(st.Loss, "0.00") }).ToList(), numericFrom: 1);
            }
            if (summary.Warnings.Count > 0)
                html.Append("<ul class=\"warnings\">").Append(string.Concat(summary.Warnings.Select(w => $"<li>{E(w)}</li>"))).Append("</ul>\n");
        });
        if (accuracy is { } a)
            Section(html, "accuracy", "Accuracy", () =>
            {
                html.Append($"<p>{a.Samples} samples of {E(a.Data)}.</p>\n");
                var rows = new List<string[]>
                {
                    new[] { "FP32", Pct(a.Fp32Top1), "", "" },
                    new[] { "quantized", Pct(a.QuantizedTop1), F(100 * (a.Fp32Top1 - a.QuantizedTop1), "0.00"), Pct(a.Agreement) },
                };
                if (a.FusedTop1 is { } fused)
                    rows.Add(["quantized, QDQ fused as ONNX Runtime runs it here", Pct(fused), F(100 * (a.Fp32Top1 - fused), "0.00"), Pct(a.FusedAgreement ?? 0)]);
                Table(html, ["model", "top-1", "drop (pt)", "agreement with FP32"], rows);
                if (a.FusedTop1 is not null)
                    html.Append($"<p class=\"note\">“quantized” runs the model's QuantizeLinear/DequantizeLinear as written (the model's meaning, the same on every CPU); the last row as ONNX Runtime fuses them into its integer kernels on this machine, which differs: {E(string.Join("; ", a.FusedReasons ?? []))}. <code>--format ort</code> emits forms ONNX Runtime runs exactly.</p>\n");
            });
        Section(html, "layers", "Per-layer output error", () =>
        {
            html.Append("<p>Each quantized linear layer's output X·W against Q(X)·Q(W) on the calibration rows sampled at its input (bias left out). Lowest SQNR first.</p>\n");
            var sites = result.Plan.Sites.ToDictionary(s => s.Name);
            bool before = doc.Layers.Any(l => l.OutputCosineBefore is not null);
            if (before) html.Append("<p>“Before” is the same measurement before interval search and bias correction changed the quantizers and biases.</p>\n");
            string Db(double? v) => v is { } d ? F(d, "0.00") : "∞";
            Table(html, ["layer", "input role", "input quantizer", "weight quantizer", .. before ? ["SQNR before (dB)"] : Array.Empty<string>(), "output SQNR (dB)", "output cosine"],
                doc.Layers.OrderBy(l => l.OutputSqnrDb ?? double.PositiveInfinity).Select(l => (string[])
                [
                    l.Node, sites[l.Input].Role.Name(), Describe(sites[l.Input]), Describe(sites[l.Weight]),
                    .. before ? [Db(l.OutputSqnrDbBefore)] : Array.Empty<string>(), Db(l.OutputSqnrDb), F(l.OutputCosine, "0.000000"),
                ]).ToList(), numericFrom: 4);
        });
        Section(html, "tensors", "Quantized tensors", () =>
            Table(html, ["tensor", "role", "module", "quantizer", "bits", "granularity", "SQNR (dB)", "cosine"],
                doc.Sites.Select(s => new[]
                {
                    s.Tensor, s.Role, s.Module, s.Quantizer, s.Bits.ToString(CultureInfo.InvariantCulture), s.Granularity,
                    s.SqnrDb is { } d ? F(d, "0.00") : "", s.Cosine is { } c ? F(c, "0.000000") : "",
                }).ToList(), numericFrom: 6));
        if (doc.Excluded is { Count: > 0 } excluded)
            Section(html, "excluded", "Kept in float", () =>
            {
                html.Append("<p>Node inputs left unquantized by <code>--exclude</code> or a recipe override of kind <code>float</code>.</p>\n");
                Table(html, ["pattern", "module", "node", "op", "input", "role", "tensor"],
                    excluded.Select(e => new[] { e.Pattern, e.Module, e.Node, e.OpType, e.Input.ToString(CultureInfo.InvariantCulture), e.Role, e.Tensor }).ToList());
            });
        Section(html, "histograms", $"Worst activations ({WorstActivations} lowest SQNR)", () => Histograms(html, result));
        Section(html, "channels", "Per-channel ranges of post-LayerNorm activations", () => Channels(html, result));
        Section(html, "timings", "Pass timings", () =>
        {
            var passes = doc.Passes.Select(p => (p.Pass, p.Seconds)).ToList();
            Figure(html, ReportPlots.PassTimings(passes), "Wall-clock time per pass.");
            Table(html, ["pass", "seconds", "changed the graph"], doc.Passes.Select(p => new[] { p.Pass, F(p.Seconds, "0.000"), p.Modified ? "yes" : "no" }).ToList(), numericFrom: 1);
        });
        html.Append("</body>\n</html>\n");
        return html.ToString();
    }

    private static void Histograms(StringBuilder html, QuantizationResult result)
    {
        if (result.Statistics is not { } stats) { html.Append("<p>No calibration statistics (the recipe collects none).</p>\n"); return; }
        var worst = result.Plan.Activations
            .Where(s => s.Error is { SqnrDb: var d } && double.IsFinite(d) && s.Parameters is not null && stats.Has(s.Value, ObserverKeys.Rows))
            .OrderBy(s => s.Error!.SqnrDb).Take(WorstActivations).ToList();
        if (worst.Count == 0) { html.Append("<p>No activation has a measured error.</p>\n"); return; }
        foreach (var site in worst)
        {
            var rows = stats.Get<RowSampleObserver>(site.Value, ObserverKeys.Rows);
            var range = ClippingRange(site.Parameters!, rows.Rows);
            string caption = $"{site.Name} ({site.Role.Name()}, {Describe(site)}): SQNR {F(site.Error!.SqnrDb, "0.00")} dB over {rows.Count} sampled rows. " +
                             (range is { } r ? $"Representable range [{F(r.Lo, "G4")}, {F(r.Hi, "G4")}] dashed." : "Ranges are set per token at run time, so no fixed range is marked.");
            Figure(html, ReportPlots.Histogram(Short(site.Name), rows.Rows, range), caption);
        }
    }

    private static void Channels(StringBuilder html, QuantizationResult result)
    {
        var postLn = result.Statistics is not { } stats ? [] : result.Plan.Activations
            .Where(s => s.Role == TensorRole.PostLayerNorm && stats.Has(s.Value, ObserverKeys.Channels))
            .Select(s => (Site: s, Channels: stats.Get<PerChannelMinMaxObserver>(s.Value, ObserverKeys.Channels)))
            .Where(x => x.Channels.Channels > 0).ToList();
        if (postLn.Count == 0) { html.Append("<p>No post-LayerNorm activation with per-channel statistics.</p>\n"); return; }
        // Strongest outliers first: the largest channel span over the median channel span.
        var ranked = postLn.Select(x => (x.Site, x.Channels, Ratio: OutlierRatio(x.Channels))).OrderByDescending(x => x.Ratio).ToList();
        html.Append($"<p>{postLn.Count} post-LayerNorm activations; the {Math.Min(ChannelPlots, postLn.Count)} with the largest ratio of widest to median channel range are drawn. " +
                    "Statistics are as the quantizer saw them (after any reparameterization).</p>\n");
        foreach (var (site, channels, ratio) in ranked.Take(ChannelPlots))
            Figure(html, ReportPlots.ChannelRanges(Short(site.Name), channels.Min, channels.Max),
                $"{site.Name}: {channels.Channels} channels over {channels.Rows} rows; widest channel range / median = {F(ratio, "0.0")}.");
        if (ranked.Count > ChannelPlots)
            Table(html, ["tensor", "channels", "widest / median range"], ranked.Skip(ChannelPlots)
                .Select(x => new[] { x.Site.Name, x.Channels.Channels.ToString(CultureInfo.InvariantCulture), F(x.Ratio, "0.0") }).ToList(), numericFrom: 1);
    }

    private static double OutlierRatio(PerChannelMinMaxObserver c)
    {
        var spans = Enumerable.Range(0, c.Channels).Select(i => (double)c.Max[i] - c.Min[i]).OrderBy(v => v).ToList();
        double median = spans[spans.Count / 2];
        return median > 0 ? spans[^1] / median : 0;
    }

    /// <summary>
    /// The interval a per-tensor quantizer represents, found by quantizing values far outside the
    /// data (every kind clamps to its extreme codes), so it holds for every quantizer kind; null
    /// for per-token and per-channel quantizers, whose range is not one interval.
    /// </summary>
    internal static (double Lo, double Hi)? ClippingRange(FittedQuantizer q, ReadOnlySpan<float> sample)
    {
        if (q.Granularity != Granularity.PerTensor) return null;
        float extent = 1;
        foreach (var v in sample) extent = Math.Max(extent, Math.Abs(v));
        var probe = new[] { -4 * extent, 4 * extent };
        q.Simulate(probe, [1, 2]);
        return float.IsFinite(probe[0]) && float.IsFinite(probe[1]) ? (probe[0], probe[1]) : null;
    }

    private static string Describe(QuantizationSite s) => s.Parameters is { } p ? $"{p.Kind} {p.Bits}-bit {p.Granularity.Name()}" : "not fitted";

    private static string Short(string name) => name.Length <= 70 ? name : "…" + name[^69..];

    private static void Section(StringBuilder html, string id, string title, Action body)
    {
        html.Append($"<section id=\"{id}\">\n<h2>{E(title)}</h2>\n");
        body();
        html.Append("</section>\n");
    }

    private static void KeyValues(StringBuilder html, IReadOnlyList<(string Key, string Value)> rows)
    {
        html.Append("<table class=\"kv\">\n");
        foreach (var (k, v) in rows) html.Append($"<tr><th>{E(k)}</th><td>{E(v)}</td></tr>\n");
        html.Append("</table>\n");
    }

    private static void Table(StringBuilder html, IReadOnlyList<string> header, IReadOnlyList<string[]> rows, int numericFrom = int.MaxValue)
    {
        html.Append("<table>\n<thead><tr>");
        for (int i = 0; i < header.Count; i++) html.Append(i >= numericFrom ? $"<th class=\"num\">{E(header[i])}</th>" : $"<th>{E(header[i])}</th>");
        html.Append("</tr></thead>\n<tbody>\n");
        foreach (var row in rows)
        {
            html.Append("<tr>");
            for (int i = 0; i < row.Length; i++) html.Append(i >= numericFrom ? $"<td class=\"num\">{E(row[i])}</td>" : $"<td>{E(row[i])}</td>");
            html.Append("</tr>\n");
        }
        html.Append("</tbody>\n</table>\n");
    }

    private static void Figure(StringBuilder html, string svg, string caption) =>
        html.Append("<figure>\n").Append(svg).Append($"\n<figcaption>{E(caption)}</figcaption>\n</figure>\n");

    private static string E(string s) => WebUtility.HtmlEncode(s);
    private static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);
    private static string Pct(double v) => F(100 * v, "0.00") + " %";

    private const string Css = """
        body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
        h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
        table { border-collapse: collapse; margin: .5em 0 1em; font-size: .85em; }
        th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
        thead th { background: #f3f3f3; position: sticky; top: 0; }
        td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
        table.kv th { background: #f8f8f8; width: 14em; }
        figure { margin: 1em 0; } figcaption { font-size: .85em; color: #555; max-width: 720px; }
        ul.warnings { color: #8a4b00; }
        p.note { color: #8a4b00; }
        """;
}
