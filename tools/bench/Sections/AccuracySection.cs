using OnnxViTQ;
using OnnxViTQ.Ir;
using OnnxViTQ.Serialization;

/// <summary>
/// "Accuracy: reference models and their outlier variants (committed)": every recipe at every bit
/// width on the committed models, and the best recipe per model against the targets.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only accuracy --out &lt;file&gt;</c>.
/// </summary>
internal static class AccuracySection
{
    public static void Write(Bench b) =>
        Table(b, "Accuracy: reference models and their outlier variants (committed)", "accuracy",
            b.Committed.Select(f => (f, (Func<Model>)(() => OnnxModelReader.Load(b.ModelPath(f))), b.Fp32(b.ModelPath(f)))).ToList(), b.Bits);

    /// <summary>A recipe × bit-width table of a set of models, then the verdict lines (also the extra section's).</summary>
    public static void Table(Bench b, string title, string section, IReadOnlyList<(string Name, Func<Model> Load, (int[], double) Fp32)> set, string[] bitWidths)
    {
        var report = b.Report;
        report.AppendLine($"## {title}");
        report.AppendLine();
        b.Regenerate(section);
        report.AppendLine();
        report.AppendLine($"| model | FP32 | recipe | {string.Join(" | ", bitWidths.Select(w => $"{w} top-1 (drop)"))} | agreement {bitWidths[^1]} | quantize time |");
        report.AppendLine($"|---|---:|---|{string.Concat(bitWidths.Select(_ => "---:|"))}---:|---:|");
        foreach (var (name, load, fp32) in set)
        {
            foreach (var recipe in b.RecipeNames)
            {
                var row = bitWidths.Select(w => b.Measure(name, load, Recipes.Get(recipe), w, fp32)).ToList();
                for (int i = 0; i < bitWidths.Length; i++) b.Outcomes.Add((name, recipe, bitWidths[i], row[i]));
                report.AppendLine($"| {name} | {Bench.Pct(fp32.Item2)} | {recipe} | {string.Join(" | ", row.Select(o => $"{Bench.Pct(o.Top1)} ({o.Drop:0.00})"))} | {Bench.Pct(row[^1].Agreement)} | {row.Average(o => o.Seconds):0.0} s |");
            }
        }
        report.AppendLine();
        Verdicts(b, set.Select(s => s.Name).ToList(), bitWidths);
    }

    private static void Verdicts(Bench b, List<string> names, string[] bitWidths)
    {
        var report = b.Report;
        var limits = new Dictionary<string, double> { ["W8A8"] = 0.2, ["W6A6"] = 0.5, ["W4A4"] = 2.0 };
        report.AppendLine("Best recipe per model and bit width (the issue's targets: ≤ 0.2 pt at W8A8, ≤ 0.5 pt at W6A6, ≤ 2 pt at W4A4):");
        report.AppendLine();
        report.AppendLine($"| model | {string.Join(" | ", bitWidths)} |");
        report.AppendLine($"|---|{string.Concat(bitWidths.Select(_ => "---|"))}");
        foreach (var name in names)
        {
            var cells = bitWidths.Select(w =>
            {
                var best = b.Outcomes.Where(o => o.Model == name && o.Bits == w).MinBy(o => o.O.Drop);
                string mark = limits.TryGetValue(w, out var l) ? (best.O.Drop <= l + 1e-9 ? "✓" : "✗") : "";
                return $"{best.Recipe} {best.O.Drop:0.00} {mark}";
            });
            report.AppendLine($"| {name} | {string.Join(" | ", cells)} |");
        }
        report.AppendLine();
        var outlierModels = names.Where(n => n.Contains("outliers")).ToList();
        if (outlierModels.Count > 0 && bitWidths.Contains("W4A4"))
        {
            var vitRecipes = b.RecipeNames.Where(r => r is not ("minmax" or "percentile")).ToList();
            var failures = (from m in outlierModels
                            let baseline = b.Outcomes.First(o => o.Model == m && o.Recipe == "minmax" && o.Bits == "W4A4").O.Top1
                            from r in vitRecipes
                            let top1 = b.Outcomes.FirstOrDefault(o => o.Model == m && o.Recipe == r && o.Bits == "W4A4").O?.Top1
                            where top1 is not null && top1 <= baseline
                            select $"{r} on {m}").ToList();
            report.AppendLine(failures.Count == 0
                ? $"Every ViT recipe ({string.Join(", ", vitRecipes)}) beats minmax at W4A4 on every outlier variant above."
                : $"ViT recipes that do not beat minmax at W4A4: {string.Join(", ", failures)}.");
            report.AppendLine();
        }
        foreach (var g in b.Outcomes.Where(o => names.Contains(o.Model)).GroupBy(o => (o.Recipe, o.Bits)).OrderBy(g => Array.IndexOf(b.RecipeNames, g.Key.Recipe)).ThenBy(g => g.Key.Bits))
            Console.WriteLine($"  {g.Key.Recipe} {g.Key.Bits}: worst {g.Max(o => o.O.Drop):0.00}, mean {g.Average(o => o.O.Drop):0.00}");
    }
}
