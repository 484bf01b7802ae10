using System.Diagnostics;
using System.Text;
using OnnxViTQ;
using OnnxViTQ.Data;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;

/// <summary>
/// "Liu et al. 2021: compile time" (marked, refreshed alone): compile time per recipe on the
/// DeiT-Tiny-shaped model; a timing, so run it on a quiet machine.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only compile --deit-tiny &lt;model.onnx&gt; --deit-tiny-calib &lt;images.npy&gt;</c>.
/// </summary>
internal static class CompileSection
{
    public static StringBuilder Write(Bench b, string deitTiny, string deitTinyCalib)
    {
        var r = new StringBuilder();
        r.AppendLine("## Liu et al. 2021: compile time");
        r.AppendLine();
        r.AppendLine($"Regenerate: `dotnet run --project tools/bench -c Release -- --only compile --deit-tiny <model.onnx> --deit-tiny-calib <images.npy>` ({DateTime.UtcNow:yyyy-MM-dd}, {b.Runtime}, {MachineInfo.CpuName()}).");
        r.AppendLine();
        r.AppendLine($"Compile time, DeiT-Tiny-shaped model (224×224, 197 tokens, dim 192, depth 12, random weights), 256 calibration images, W8A8:");
        r.AppendLine();
        r.AppendLine("| recipe | time | passes ≥ 0.5 s |");
        r.AppendLine("|---|---:|---|");
        foreach (var (recipe, mixed) in new (string, MixedPrecision?)[] { ("minmax", null), ("percentile", null), ("liu2021", null), ("liu2021", new MixedPrecision(4, 8, 6)) })
        {
            var model = OnnxModelReader.Load(deitTiny);
            var sw = Stopwatch.StartNew();
            var result = Quantizer.Quantize(model, deitTiny, new NpyTensorSource(deitTinyCalib, ImagePreprocessing.ForModel(model, 3, 224, 224)),
                new QuantizationOptions { Bits = BitWidths.W8A8, CalibrationSamples = 256, MixedPrecision = mixed }, Recipes.Get(recipe));
            sw.Stop();
            var passes = string.Join(", ", result.Timings.Where(t => t.Elapsed.TotalSeconds >= 0.5).Select(t => $"{t.Pass} {t.Elapsed.TotalSeconds:0.0} s"));
            string label = mixed is null ? recipe : $"{recipe} mixed:4-8 avg 6";
            Console.WriteLine($"deit-tiny {label}: {sw.Elapsed.TotalSeconds:0.0} s ({passes})");
            r.AppendLine($"| {label} | {sw.Elapsed.TotalSeconds:0.0} s | {passes} |");
        }
        r.AppendLine();
        r.AppendLine();
        return r;
    }
}
