using System.Text;
using OnnxViTQ;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;

/// <summary>
/// "Liu et al. 2021: interval search and bias correction" (marked, refreshed alone): interval
/// search and bias correction against the baselines on every committed model.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only search</c>.
/// </summary>
internal static class SearchSection
{
    public static StringBuilder Write(Bench b)
    {
        var r = new StringBuilder();
        string[] searchBits = ["W8A8", "W6A6", "W4A4"];
        r.AppendLine("## Liu et al. 2021: interval search and bias correction");
        r.AppendLine();
        r.AppendLine($"Regenerate: `dotnet run --project tools/bench -c Release -- --only search` ({DateTime.UtcNow:yyyy-MM-dd}, {b.Runtime}, {MachineInfo.CpuName()}); mixed precision and compile time: the next sections.");
        r.AppendLine("`liu2021` = `choose-ranges` (each activation role starts from its 99.99th percentile or its observed min/max, whichever gives the lower");
        r.AppendLine("mean KL of the whole quantized model to FP32 on the calibration images), `search-intervals` over the linear layers (20 candidates in");
        r.AppendLine("[0.5, 1.2]·Δ₀, up to 20 alternating rounds, Pearson over the whole sampled output) and `correct-bias` (kept only when it lowers that mean KL by more than");
        r.AppendLine("1.5 standard errors and no fewer calibration images keep their FP32 class; `bc` says whether it was kept). `liu2021 −bc`: without bias correction. `liu2021 +qk`: the Q·Kᵀ operands");
        r.AppendLine("searched too (`products=scores`: per-head Pearson of the attention maps − 1·ranking loss, on the first 8 calibration images).");
        r.AppendLine($"Drop in points on {b.EvalSet}; layer SQNR is the mean over the linear layers of X·W against Q(X)·Q(W) (bias");
        r.AppendLine("correction included) on the calibration rows.");
        r.AppendLine();
        var liu = Recipes.Get("liu2021");
        var noBias = liu with { Name = "liu2021 −bc", Removed = ["correct-bias"] };
        var withProducts = liu with
        {
            Name = "liu2021 +qk",
            Passes = liu.Passes.Select(p => p.Name == "search-intervals" ? p with { Options = new Dictionary<string, string> { ["products"] = "scores" } } : p).ToList(),
        };
        Recipe[] candidates = [Recipes.Get("minmax"), Recipes.Get("percentile"), noBias, liu, withProducts];
        r.AppendLine($"| model | bits | {string.Join(" | ", candidates.Select(c => $"{c.Name} drop"))} | bc | minmax layer SQNR | liu2021 layer SQNR |");
        r.AppendLine($"|---|---|{string.Concat(candidates.Select(_ => "---:|"))}---|---:|---:|");
        var verdicts = new List<string>();
        double worstBiasHarm = double.NegativeInfinity;
        string worstBiasAt = "";
        foreach (var file in b.Committed)
        {
            var path = b.ModelPath(file);
            var fp32 = b.Fp32(path);
            foreach (var bits in searchBits)
            {
                var o = candidates.Select(c => b.Measure(file, () => OnnxModelReader.Load(path), c, bits, fp32, layerErrors: true)).ToArray();
                double Sqnr(Outcome x) => x.Result.LayerErrors.Where(l => double.IsFinite(l.Error.SqnrDb)).Average(l => l.Error.SqnrDb);
                var full = o[3];
                string kept = full.Result.Diagnostics.Any(d => d.Message.StartsWith("bias correction: not applied")) ? "rejected" : "kept";
                r.AppendLine($"| {file} | {bits} | {string.Join(" | ", o.Select(x => $"{x.Drop:0.00}"))} | {kept} | {Sqnr(o[0]):0.0} dB | {Sqnr(full):0.0} dB |");
                double harm = full.Drop - o[2].Drop;
                if (harm > worstBiasHarm) (worstBiasHarm, worstBiasAt) = (harm, $"{file} {bits}");
                if (bits == "W4A4")
                    verdicts.Add($"{file}: liu2021 {full.Drop:0.00} vs minmax {o[0].Drop:0.00} / percentile {o[1].Drop:0.00} → {(full.Drop < o[0].Drop && full.Drop < o[1].Drop ? "✓" : "✗")}, " +
                                 $"layer SQNR {Sqnr(full):0.0} vs {Sqnr(o[0]):0.0} dB → {(Sqnr(full) > Sqnr(o[0]) ? "✓" : "✗")}");
            }
        }
        r.AppendLine();
        r.AppendLine("W4A4 criteria (liu2021 loses less top-1 than minmax and percentile; its mean layer SQNR beats minmax's):");
        r.AppendLine();
        foreach (var v in verdicts) r.AppendLine($"- {v}");
        r.AppendLine();
        r.AppendLine($"Bias correction: the largest accuracy cost over all rows is {worstBiasHarm:0.00} pt ({worstBiasAt}; positive = correction lost accuracy; criterion ≤ 0.10).");
        r.AppendLine();
        r.AppendLine();
        return r;
    }
}
