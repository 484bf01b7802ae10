using OnnxViTQ;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;

/// <summary>
/// "ADFQ-ViT ablation (outlier variants)": the paper's Table 4 layout — each of adfq's quantizers
/// alone and together, the other roles as in minmax, on the outlier variants.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only ablation --out &lt;file&gt;</c>.
/// </summary>
internal static class AblationSection
{
    public static void Write(Bench b)
    {
        var report = b.Report;
        var adfq = Recipes.Get("adfq");
        var parts = new (string Name, TensorRole[] Roles)[]
        {
            ("none (minmax)", []), ("POQ", [TensorRole.PostLayerNorm]), ("SLQ", [TensorRole.PostGelu]), ("log2", [TensorRole.PostSoftmax]),
            ("POQ + SLQ", [TensorRole.PostLayerNorm, TensorRole.PostGelu]), ("POQ + SLQ + log2 (adfq)", [TensorRole.PostLayerNorm, TensorRole.PostGelu, TensorRole.PostSoftmax]),
        };
        string[] ablationBits = b.Bits.Where(w => w != "W8A8").ToArray();
        report.AppendLine("## ADFQ-ViT ablation (outlier variants)");
        report.AppendLine();
        b.Regenerate("ablation");
        report.AppendLine("Each part of the `adfq` recipe alone and together (POQ: per-token outlier-aware post-LayerNorm; SLQ: shift-log2 post-GELU;");
        report.AppendLine("log2: post-Softmax); roles not listed get the `minmax` quantizer. Top-1 (drop in pt).");
        report.AppendLine();
        var ablationModels = b.Committed.Where(f => f.Contains("outliers")).ToList();
        report.AppendLine($"| parts | bits | {string.Join(" | ", ablationModels)} | mean drop |");
        report.AppendLine($"|---|---|{string.Concat(ablationModels.Select(_ => "---:|"))}---:|");
        foreach (var bits in ablationBits)
            foreach (var (partName, roles) in parts)
            {
                var recipe = adfq with
                {
                    Name = $"adfq[{partName}]",
                    Quantizers = adfq.Quantizers with { Roles = adfq.Quantizers.Roles.Where(kv => roles.Contains(kv.Key)).ToDictionary() },
                };
                var row = ablationModels.Select(f => b.Measure(f, () => OnnxModelReader.Load(b.ModelPath(f)), recipe, bits, b.Fp32(b.ModelPath(f)))).ToList();
                report.AppendLine($"| {partName} | {bits} | {string.Join(" | ", row.Select(o => $"{Bench.Pct(o.Top1)} ({o.Drop:0.00})"))} | {row.Average(o => o.Drop):0.00} |");
            }
        report.AppendLine();
    }
}
