using OnnxViTQ;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Serialization;

/// <summary>
/// "--recipe auto" (marked, refreshed alone): on every committed model, auto at W4A4 against the
/// best of the eight built-in recipes run alone (512 calibration samples each, as a user runs
/// them), and auto at W8A8 against minmax, the default; top-1 on the evaluation images.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only auto</c>.
/// </summary>
internal static class AutoSection
{
    public static void Write(Bench b)
    {
        var r = b.Report;
        r.AppendLine("## `--recipe auto`");
        r.AppendLine();
        b.Regenerate("auto");
        r.AppendLine($"`--recipe auto` is given the 512 calibration samples followed by 2048 unlabelled test-split images (`{Path.GetFileName(b.Unlabelled)}`, `tools/zoo/zoo.py unlabelled`; " +
                     "none of them is an evaluation image: images from where the model is used, which a user has without labels). It quantizes a copy of the model with each built-in recipe " +
                     $"({string.Join(", ", AutoRecipe.Candidates)}; cheapest first, `--auto-seconds` 900) on the 512 calibration samples and keeps the one whose outputs on the 2048 held-out images " +
                     "are closest to FP32 (least mean KL, then most top-1 agreement; no labels); \"lead\" is its KL margin over the next candidate there, with the standard error of that paired difference. " +
                     $"Against it: each recipe alone on the same 512 samples; drops in pt of top-1 on {b.EvalSet}. ✓: auto within 0.3 pt of the best single recipe.");
        r.AppendLine();
        r.AppendLine("| model | best recipe W4A4 | auto W4A4 | auto − best | | auto's lead (W4A4) | minmax W8A8 | auto W8A8 | auto time / minmax time (W8A8) |");
        r.AppendLine("|---|---|---|---:|---|---|---:|---|---:|");
        int within = 0, better = 0;
        foreach (var f in b.Committed)
        {
            var fp32 = b.Fp32(b.ModelPath(f));
            Func<Model> load = () => OnnxModelReader.Load(b.ModelPath(f));
            var singles = AutoRecipe.Candidates.Select(name => (Name: name, O: b.Measure(f, load, Recipes.Get(name), "W4A4", fp32))).ToList();
            var best = singles.MinBy(s => s.O.Drop);
            var auto4 = Auto(b, f, load, fp32, "W4A4");
            var minmax8 = b.Measure(f, load, Recipes.Get("minmax"), "W8A8", fp32);
            var auto8 = Auto(b, f, load, fp32, "W8A8");
            double gap = auto4.Drop - best.O.Drop;
            if (gap <= 0.3) within++;
            if (auto8.Drop <= minmax8.Drop) better++;
            var lead = auto4.Result.Auto!.Lead;
            r.AppendLine($"| {f} | {best.Name} {best.O.Drop:0.00} | {auto4.Result.Recipe.Name} {auto4.Drop:0.00} | {gap:0.00} | {(gap <= 0.3 ? "✓" : "✗")} | " +
                         $"{(lead is null ? "" : $"{lead.KlDifference:0.0000} ± {lead.StandardError:0.0000} below {lead.RunnerUp}")} | " +
                         $"{minmax8.Drop:0.00} | {auto8.Result.Recipe.Name} {auto8.Drop:0.00} | {auto8.Seconds / minmax8.Seconds:0.0}× |");
        }
        r.AppendLine();
        r.AppendLine($"Auto within 0.3 pt of the best single recipe at W4A4 on {within} of {b.Committed.Count} models; at W8A8 it loses no more than minmax on {better} of {b.Committed.Count}.");
        r.AppendLine();
    }

    private static Outcome Auto(Bench b, string f, Func<Model> load, (int[] Predictions, double Top1) fp32, string bits) =>
        b.Measure(f, load, $"auto {bits}", fp32, model => Quantizer.Quantize(model, f, b.AutoPool(model),
            new QuantizationOptions { Recipe = AutoRecipe.Name, Bits = BitWidths.Parse(bits) }));
}
