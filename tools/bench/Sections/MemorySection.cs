using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

/// <summary>
/// "Calibration memory" (marked, refreshed alone): the CLI run as a child process per sample
/// count, which reports its own peak working set; the calibration data is the 2000 uint8
/// evaluation images (distinct samples).
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only memory</c>.
/// </summary>
internal static class MemorySection
{
    public static StringBuilder Write(Bench b)
    {
        var mr = new StringBuilder();
        mr.AppendLine("## Calibration memory");
        mr.AppendLine();
        mr.AppendLine($"Regenerate this table: `dotnet run --project tools/bench -c Release -- --only memory` (refreshes this section of BENCHMARKS.md alone; this run: {DateTime.UtcNow:yyyy-MM-dd}, {b.Runtime}).");
        mr.AppendLine("Peak working set of `onnxvitq quantize models/vit.opset17.onnx --calib models/data/eval_2000_images_u8.npy --samples N` (batch 32),");
        mr.AppendLine("one process per row, recipes minmax, adfq and liu2021 with mixed precision (interval search, bias correction and module widths work on");
        mr.AppendLine("fixed-size row samples). Memory is bounded by the batch size, not by the number of calibration samples.");
        mr.AppendLine();
        mr.AppendLine("| recipe | samples | peak memory | quantize time |");
        mr.AppendLine("|---|---:|---:|---:|");
        string cli = Path.Combine(AppContext.BaseDirectory, "onnxvitq.dll");
        foreach (var (recipe, extraArgs) in new (string, string[])[] { ("minmax", []), ("adfq", []), ("liu2021 mixed:4-8 avg 6", ["--bits", "mixed:4-8", "--avg-bits", "6"]) })
            foreach (int n in new[] { 128, 1024, 2000 })
            {
                string tmp = Path.Combine(Path.GetTempPath(), $"onnxvitq-bench-{n}.onnx");
                var psi = new ProcessStartInfo("dotnet", [cli, "quantize", b.ModelPath("vit.opset17.onnx"), "-o", tmp, "--calib", b.CommittedEval, "--samples", n.ToString(),
                    "--recipe", recipe.Split(' ')[0], .. extraArgs])
                { RedirectStandardOutput = true, RedirectStandardError = true };
                using var p = Process.Start(psi)!;
                string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
                p.WaitForExit();
                if (p.ExitCode != 0) throw new Exception($"CLI failed: {output}");
                string peak = Regex.Match(output, @"peak memory\s*│\s*([^│]+?)\s*│").Groups[1].Value;
                string time = Regex.Match(output, @"time\s*│\s*([0-9.]+ s)").Groups[1].Value;
                mr.AppendLine($"| {recipe} | {n} | {peak} | {time} |");
                Console.WriteLine($"{recipe} {n} samples: peak {peak}, {time}");
                File.Delete(tmp);
            }
        mr.AppendLine();
        mr.AppendLine();
        return mr;
    }
}
