using OnnxViTQ;
using OnnxViTQ.Ir;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;

/// <summary>
/// "Models from other exporters" (marked, refreshed alone): the files of models/exports — the
/// reference models at opset 9, 11, 18 and 20, with Constant-node weights, and the CNN-transformer
/// hybrid — quantized at W8A8 by every built-in recipe (the best one's drop is the issue's bound),
/// and the hybrid's convolutional part with each of its three treatments (cross-layer
/// equalization, per-channel depthwise inputs, conv bias correction) taken out, at W8A8, W6A6 and W4A4.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only exports</c>.
/// </summary>
internal static class ExportsSection
{
    public static readonly string[] Files =
    [
        "vit.opset9.onnx", "deit.opset11.onnx", "swin.opset11.onnx", "vit.opset18.onnx", "swin.opset20.onnx",
        "vit-constant-nodes.opset13.onnx", "hybrid.opset17.onnx",
    ];

    public static void Write(Bench b)
    {
        var r = b.Report;
        string Path(string f) => System.IO.Path.Combine(b.Models, "exports", f);
        r.AppendLine("## Models from other exporters");
        r.AppendLine();
        b.Regenerate("exports");
        r.AppendLine("The files of `models/exports` (models/README.md: PyTorch 1.13 re-exports of the committed weights at opset 9 and 11, our adapters' opset 18 and 20, " +
                     "weights in Constant nodes, and the CNN-transformer hybrid), each quantized by `quantize` as a user runs it: converted to the compiler's opsets, " +
                     $"512 calibration samples. W8A8 drop in pt of top-1 on {b.EvalSet} for every built-in recipe; ✓: the best loses ≤ 0.5 pt.");
        r.AppendLine();
        r.AppendLine($"| model | FP32 top-1 | {string.Join(" | ", Recipes.Names)} | best |");
        r.AppendLine($"|---|---:|{string.Concat(Recipes.Names.Select(_ => "---:|"))}---|");
        foreach (var f in Files)
        {
            var fp32 = b.Fp32(Path(f));
            var drops = Recipes.Names.Select(name => b.Measure(f, () => OnnxModelReader.Load(Path(f)), Recipes.Get(name), "W8A8", fp32).Drop).ToList();
            double best = drops.Min();
            r.AppendLine($"| {f} | {Bench.Pct(fp32.Top1)} | {string.Join(" | ", drops.Select(d => $"{d:0.00}"))} | " +
                         $"{Recipes.Names[drops.IndexOf(best)]} {best:0.00} {(best <= 0.5 ? "✓" : "✗")} |");
        }
        r.AppendLine();

        const string hybrid = "hybrid.opset17.onnx";
        var hybridFp32 = b.Fp32(Path(hybrid));
        var minmax = Recipes.Get("minmax");
        var variants = new (string Name, Recipe Recipe)[]
        {
            ("all three", minmax),
            ("no equalization", minmax with { Name = "minmax-no-cle", Removed = ["equalize-convs"] }),
            ("depthwise inputs per tensor", minmax with
            {
                Name = "minmax-dw-per-tensor",
                Quantizers = minmax.Quantizers with { Roles = new Dictionary<TensorRole, QuantizerChoice>(minmax.Quantizers.Roles) { [TensorRole.DepthwiseInput] = new("uniform") } },
            }),
            ("no conv bias correction", minmax with { Name = "minmax-no-conv-bias", Removed = ["correct-conv-bias"] }),
            ("none", minmax with
            {
                Name = "minmax-plain-convs",
                Removed = ["equalize-convs", "correct-conv-bias"],
                Quantizers = minmax.Quantizers with { Roles = new Dictionary<TensorRole, QuantizerChoice>(minmax.Quantizers.Roles) { [TensorRole.DepthwiseInput] = new("uniform") } },
            }),
        };
        string[] bits = ["W8A8", "W6A6", "W4A4"];
        r.AppendLine($"The hybrid's convolutional part (`{hybrid}`, FP32 {Bench.Pct(hybridFp32.Top1)}; minmax for every other site), each treatment taken out; drop in pt:");
        r.AppendLine();
        r.AppendLine($"| convolutional part | {string.Join(" | ", bits)} |");
        r.AppendLine($"|---|{string.Concat(bits.Select(_ => "---:|"))}");
        foreach (var (name, recipe) in variants)
        {
            var row = bits.Select(w => b.Measure(hybrid, () => OnnxModelReader.Load(Path(hybrid)), recipe, w, hybridFp32).Drop);
            r.AppendLine($"| {name} | {string.Join(" | ", row.Select(d => $"{d:0.00}"))} |");
        }
        r.AppendLine();
    }
}
