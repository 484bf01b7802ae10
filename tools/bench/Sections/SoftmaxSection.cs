using OnnxViTQ;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;

/// <summary>
/// "Post-Softmax quantizers: TanQ against log2, log√2 and uniform": the dopq recipe with only its
/// post-Softmax quantizer changed, on the opset-17 models.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only softmax --out &lt;file&gt;</c>.
/// </summary>
internal static class SoftmaxSection
{
    public static void Write(Bench b)
    {
        var report = b.Report;
        var dopq = Recipes.Get("dopq");
        report.AppendLine("## Post-Softmax quantizers: TanQ against log2, log√2 and uniform");
        report.AppendLine();
        b.Regenerate("softmax");
        report.AppendLine("The `dopq` recipe with only the post-Softmax quantizer changed. SQNR: mean over the post-Softmax sites of");
        report.AppendLine("10·log10(Σx²/Σ(x − x̂)²) on sampled calibration rows; top-1 drop in pt. (TanQ's design: docs/METHODS-NOTES.md.)");
        report.AppendLine();
        var softmaxModels = b.Committed.Where(f => f.EndsWith(".opset17.onnx")).ToList();
        report.AppendLine($"| post-Softmax quantizer | bits | {string.Join(" | ", softmaxModels.Select(m => $"{m} SQNR / drop"))} |");
        report.AppendLine($"|---|---|{string.Concat(softmaxModels.Select(_ => "---:|"))}");
        foreach (var bits in b.Bits)
            foreach (var kind in new[] { "tan", "log2", "log-sqrt2", "uniform" })
            {
                var recipe = dopq with
                {
                    Name = $"dopq[{kind}]",
                    Quantizers = dopq.Quantizers with { Roles = new Dictionary<TensorRole, QuantizerChoice>(dopq.Quantizers.Roles) { [TensorRole.PostSoftmax] = new(kind) } },
                };
                var cells = softmaxModels.Select(f =>
                {
                    var o = b.Measure(f, () => OnnxModelReader.Load(b.ModelPath(f)), recipe, bits, b.Fp32(b.ModelPath(f)));
                    double sqnr = o.Result.Plan.Sites.Where(s => s.Role == TensorRole.PostSoftmax && s.Error is not null).Average(s => s.Error!.SqnrDb);
                    return $"{sqnr:0.0} dB / {o.Drop:0.00}";
                });
                report.AppendLine($"| {kind} | {bits} | {string.Join(" | ", cells)} |");
            }
        report.AppendLine();
    }
}
