using System.Globalization;
using System.Text;
using OnnxViTQ;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;

/// <summary>
/// "Liu et al. 2021: mixed precision" (marked, refreshed alone): per-module widths at an average
/// against uniform widths, paired over the same evaluation images. Accuracy only: it can run beside
/// other work; the compile times (the compile section) need a quiet machine.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only mixed [--eval-images &lt;images.npy&gt; --eval-labels &lt;labels.npy&gt;]</c>.
/// </summary>
internal static class MixedSection
{
    public static StringBuilder Write(Bench b)
    {
        var r = new StringBuilder();
        var liu = Recipes.Get("liu2021");
        // Liu et al.'s own sensitivity (nuclear norm × module output error), the mixed-precision pass's score=nuclear.
        int calibrate = liu.Passes.ToList().FindIndex(p => p.Name == "collect-statistics");
        Recipe LiuMixed(double average, string score) => liu with
        {
            Name = $"liu2021 mixed {score}",
            Passes = [.. liu.Passes.Take(calibrate + 1),
                      new PassStep("mixed-precision", new Dictionary<string, string> { ["min"] = "4", ["max"] = "8", ["avg"] = average.ToString(CultureInfo.InvariantCulture), ["score"] = score }),
                      .. liu.Passes.Skip(calibrate + 1)],
        };
        r.AppendLine("## Liu et al. 2021: mixed precision");
        r.AppendLine();
        r.AppendLine($"Regenerate: `dotnet run --project tools/bench -c Release -- --only mixed{(b.ModelFilter is null ? "" : $" --models {string.Join(",", b.ModelFilter)}")}{(b.EvalImages == b.CommittedEval ? "" : " --eval-images <" + Path.GetFileName(b.EvalImages) + "> --eval-labels <labels.npy>")}` ({DateTime.UtcNow:yyyy-MM-dd}, {b.Runtime}, {MachineInfo.CpuName()}); compile time: the next section.");
        if (b.EvalImages != b.CommittedEval)
            r.AppendLine($"Evaluation images: {b.EvalSet} (`/usr/bin/python3 tools/zoo/zoo.py test-split` writes the whole 10 000-image test split, which contains the committed 2000; " +
                         "on the clean models both W6A6 forms sit at FP32's top-1, and the 2000 images could not tell them apart).");
        r.AppendLine("`liu2021 --bits mixed:4-8 --avg-bits N`: one width per attention/MLP module; patch embedding, head and image at 8 bits, outside the");
        r.AppendLine("average. A module's sensitivity at each width is measured by ONNX Runtime with that module alone quantized, on the first 32");
        r.AppendLine("calibration images: `kl` (the default) = the model's mean KL to FP32; `nuclear` (Liu et al.'s form, opset-17 exports only, for");
        r.AppendLine($"time) = nuclear norm of the module's FP32 output × that output's squared error. Drop in points on {b.EvalSet};");
        r.AppendLine("`avg` is the weight-weighted average the allocation reached.");
        r.AppendLine($"Mixed 6 against minmax W6A6, paired over the same {b.Labels.Length} images (± one standard error of the paired difference): Δ drop = mixed's drop −");
        r.AppendLine("minmax's (negative: mixed loses less), Δ agreement = mixed's top-1 agreement with FP32 − minmax's (positive: mixed is closer to FP32).");
        r.AppendLine("Verdict on the drop: ✓ / ✗ when the difference exceeds 2 standard errors, ≈ when it does not (then the agreement's verdict follows).");
        r.AppendLine();
        r.AppendLine("| model | minmax W6A6 | liu2021 W6A6 | liu2021 mixed avg ≤ 6 | mixed avg ≤ 6, nuclear score | liu2021 mixed avg ≤ 5 | liu2021 W5A5 | Δ drop, mixed 6 − minmax W6A6 | Δ agreement | mixed 6 beats minmax W6A6 |");
        r.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        var verdicts = new List<(string Drop, string Agreement, double MinmaxDrop, double MixedDrop)>();
        foreach (var file in b.Committed)
        {
            var path = b.ModelPath(file);
            var fp32 = b.Fp32(path);
            var minmax6 = b.Measure(file, () => OnnxModelReader.Load(path), Recipes.Get("minmax"), "W6A6", fp32);
            var liu6 = b.Measure(file, () => OnnxModelReader.Load(path), liu, "W6A6", fp32);
            var mixed6 = b.Measure(file, () => OnnxModelReader.Load(path), LiuMixed(6, "kl"), "W8A8", fp32);
            var nuclear6 = file.Contains(".opset17.") ? b.Measure(file, () => OnnxModelReader.Load(path), LiuMixed(6, "nuclear"), "W8A8", fp32) : null;
            var mixed5 = b.Measure(file, () => OnnxModelReader.Load(path), LiuMixed(5, "kl"), "W8A8", fp32);
            var liu5 = b.Measure(file, () => OnnxModelReader.Load(path), liu, "W5A5", fp32);
            string Mixed(Outcome o) => $"{o.Drop:0.00} (avg {o.Result.ModuleBits!.AverageBits:0.##})";
            var (dropDiff, dropSe) = Outcome.Paired(minmax6.Correct, mixed6.Correct); // minmax right − mixed right = mixed's drop − minmax's
            var (agreeDiff, agreeSe) = Outcome.Paired(mixed6.Agrees, minmax6.Agrees);
            static string Verdict(double better, double se) => better > 2 * se ? "✓" : better < -2 * se ? "✗" : "≈";
            string drop = Verdict(-dropDiff, dropSe), agreement = Verdict(agreeDiff, agreeSe);
            verdicts.Add((drop, agreement, minmax6.Drop, mixed6.Drop));
            r.AppendLine($"| {file} | {minmax6.Drop:0.00} | {liu6.Drop:0.00} | {Mixed(mixed6)} | {(nuclear6 is null ? "—" : Mixed(nuclear6))} | {Mixed(mixed5)} | {liu5.Drop:0.00} " +
                         $"| {dropDiff:+0.00;−0.00;0.00} ± {dropSe:0.00} | {agreeDiff:+0.00;−0.00;0.00} ± {agreeSe:0.00} | {(drop == "≈" ? $"≈ top-1, {agreement} agreement" : $"{drop} top-1")} |");
        }
        r.AppendLine();
        if (verdicts.Count > 0)
        {
            int Count(Func<(string Drop, string Agreement, double, double), bool> f) => verdicts.Count(f);
            r.AppendLine($"Over the {verdicts.Count} models: mean drop {verdicts.Average(v => v.MinmaxDrop):0.00} pt for minmax W6A6 against {verdicts.Average(v => v.MixedDrop):0.00} for mixed avg 6. " +
                         $"Mixed 6 loses significantly less top-1 on {Count(v => v.Drop == "✓")}, more on {Count(v => v.Drop == "✗")}; where top-1 ties " +
                         $"it is significantly closer to FP32 by agreement on {Count(v => v.Drop == "≈" && v.Agreement == "✓")}, farther on {Count(v => v.Drop == "≈" && v.Agreement == "✗")}, " +
                         $"and level on {Count(v => v.Drop == "≈" && v.Agreement == "≈")}.");
            r.AppendLine();
        }
        r.AppendLine();
        return r;
    }
}
