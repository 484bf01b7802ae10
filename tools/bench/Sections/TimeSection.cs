using System.Diagnostics;
using OnnxViTQ;
using OnnxViTQ.Data;
using OnnxViTQ.Serialization;

/// <summary>
/// "Quantize wall time per recipe": the accuracy runs' quantize times per recipe and, with the
/// DeiT-Tiny-shaped model, a W8A8 compile of it per recipe with its slow passes.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only accuracy,time --deit-tiny &lt;model&gt; --deit-tiny-calib &lt;images&gt; --out &lt;file&gt;</c>.
/// </summary>
internal static class TimeSection
{
    public static void Write(Bench b)
    {
        var report = b.Report;
        report.AppendLine("## Quantize wall time per recipe");
        report.AppendLine();
        b.Regenerate("accuracy,time");
        report.AppendLine("`Quantizer.Quantize` (calibration through ONNX Runtime included), mean over the runs above per recipe on the committed");
        report.AppendLine("models (512 calibration images, 28×28).");
        if (b.DeitTiny is not null && b.DeitTinyCalib is not null)
            report.AppendLine($"DeiT-Tiny-shaped model: 224×224, 197 tokens, dim 192, depth 12, 3 heads, random weights, exported by `tools/zoo/zoo.py deit-tiny`; 256 calibration images (`{Path.GetFileName(b.DeitTinyCalib)}`), W8A8.");
        report.AppendLine();
        report.AppendLine($"| recipe | reference models, mean | {(b.DeitTiny is null ? "" : "DeiT-Tiny-shaped, 256 images | ")}");
        report.AppendLine($"|---|---:|{(b.DeitTiny is null ? "" : "---:|")}");
        foreach (var recipe in b.RecipeNames)
        {
            var runs = b.Outcomes.Where(o => o.Recipe == recipe && b.Committed.Contains(o.Model)).ToList();
            string small = runs.Count > 0 ? $"{runs.Average(o => o.O.Seconds):0.0} s" : "–";
            string tiny = "";
            if (b.DeitTiny is not null && b.DeitTinyCalib is not null)
            {
                var model = OnnxModelReader.Load(b.DeitTiny);
                var sw = Stopwatch.StartNew();
                var result = Quantizer.Quantize(model, b.DeitTiny, new NpyTensorSource(b.DeitTinyCalib, ImagePreprocessing.ForModel(model, 3, 224, 224)),
                    new QuantizationOptions { Bits = BitWidths.W8A8, CalibrationSamples = 256 }, Recipes.Get(recipe));
                sw.Stop();
                var passes = string.Join(", ", result.Timings.Where(t => t.Elapsed.TotalSeconds >= 0.5).Select(t => $"{t.Pass} {t.Elapsed.TotalSeconds:0.0}"));
                Console.WriteLine($"deit-tiny {recipe}: {sw.Elapsed.TotalSeconds:0.0} s ({passes})");
                tiny = $" {sw.Elapsed.TotalSeconds:0.0} s ({passes}) |";
            }
            report.AppendLine($"| {recipe} | {small} |{tiny}");
        }
        report.AppendLine();
    }
}
