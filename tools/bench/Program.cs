using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using OnnxViTQ;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;

// Writes BENCHMARKS.md: one file per section under Sections/ (its doc comment gives its command).
// Usage:
//   dotnet run --project tools/bench -c Release -- [--out BENCHMARKS.md] [--only accuracy,ablation,softmax,time,extra,memory,search,mixed,compile,speed,gemm]
//       [--extra <folder of .onnx>] [--deit-tiny <model.onnx> --deit-tiny-calib <images.npy>]
//       [--models vit,swin-outliers] [--recipes minmax,adfq] [--bits W4A4] [--eval-images <images.npy> --eval-labels <labels.npy>] [--rounds N] [--no-write]
// --extra adds separately trained exports (tools/zoo/zoo.py train --variant alt), each with an
// outlier variant made in memory by the same tool as the committed ones. Sections between markers
// (memory, search, mixed, compile, speed) can be refreshed alone, leaving the rest of the file as it is.

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
var b = new Bench(args);  // reads arguments and .npy headers only: ONNX Runtime is not started yet
var only = b.Only;
// The speed section's sessions share one spinning thread pool, which must be made with the
// process's ONNX Runtime environment, before anything else runs ONNX Runtime.
if ((only.Contains("speed") || only.Contains("gemm")) && !SessionThreads.SharedPool(Speed.Threads).Shared)
    throw new InvalidOperationException("ONNX Runtime's environment existed before the speed benchmark could create its shared thread pool");
var report = b.Report;
report.AppendLine("# Benchmarks");
report.AppendLine();
report.AppendLine($"Produced by `dotnet run --project tools/bench -c Release -- {string.Join(" ", args.Select(a => a.StartsWith('/') ? "<" + Path.GetFileName(a) + ">" : a))}` " +
                  $"on {DateTime.UtcNow:yyyy-MM-dd} ({b.Runtime}). Every figure outside the marked sections was measured in that run; the sections between " +
                  "`<!-- name:begin/end -->` markers (memory, search, mixed, speed) are refreshed alone by `--only <name>` and give their own command and date.");
report.AppendLine($"FP32 and quantized models are evaluated side by side by ONNX Runtime (CPU) on the same {b.Labels.Length} Fashion-MNIST test images");
report.AppendLine("(`models/data`); the quantized model is the emitted ONNX file (the writer's bytes, read back), its QuantizeLinear/DequantizeLinear run");
report.AppendLine("as written (`session.disable_quant_qdq`: the model's meaning, the same on every CPU — ONNX Runtime's fused int8 kernels saturate");
report.AppendLine("u8×s8 sums on CPUs without VNNI and re-quantize float activations through MatMulNBits; README \"CPUs without VNNI\"). Calibration: the 512 bundled");
report.AppendLine("training images. Drop = FP32 top-1 − quantized top-1, in points (negative: the quantized model scored higher).");
report.AppendLine("`*-outliers.*` are the function-preserving outlier variants (`onnxvitq outliers`, models/README.md): same FP32");
report.AppendLine("predictions, post-LayerNorm activations with a few channels 8–50× larger, as in ImageNet ViTs.");
report.AppendLine();

if (only.Contains("accuracy")) AccuracySection.Write(b);
if (only.Contains("ablation")) AblationSection.Write(b);
if (only.Contains("softmax")) SoftmaxSection.Write(b);
if (only.Contains("time")) TimeSection.Write(b);
if (only.Contains("extra") && b.Extra is { } extra) ExtraSection.Write(b, extra);

var marked = new Dictionary<string, StringBuilder>();
if (only.Contains("memory")) marked["memory"] = MemorySection.Write(b);
report.Append(marked.GetValueOrDefault("memory"));
if (only.Contains("search")) marked["search"] = SearchSection.Write(b);
if (only.Contains("mixed")) marked["mixed"] = MixedSection.Write(b);
if (only.Contains("compile") && (b.DeitTiny is null || b.DeitTinyCalib is null) && b.ListedExplicitly("--only"))
    throw new OnnxViTQException("--only compile needs --deit-tiny <model.onnx> --deit-tiny-calib <images.npy> (made by tools/zoo/zoo.py deit-tiny)");
if (only.Contains("compile") && b.DeitTiny is { } tiny && b.DeitTinyCalib is { } tinyCalib) marked["compile"] = CompileSection.Write(b, tiny, tinyCalib);
if (only.Contains("gemm"))
{
    SpeedSection.PrintGemm(b);
    if (only.Count == 1) return;
}
if (only.Contains("speed")) marked["speed"] = SpeedSection.Write(b);

string speedMarker = SpeedSection.Marker;
// Where a section goes when the file does not have it yet: after the one it follows in a full report.
var follows = new Dictionary<string, string> { ["compile"] = "mixed" };
string MarkerOf(string section) => section == "speed" ? speedMarker : section;
string[] markedNames = ["memory", "search", "mixed", "compile", "speed"];
if (b.Write && only.IsSubsetOf(markedNames) && File.Exists(b.OutPath))
{
    string existing = File.ReadAllText(b.OutPath);
    foreach (var section in only)
    {
        string text = marked.GetValueOrDefault(section)?.ToString() ?? "";
        string begin = $"<!-- {MarkerOf(section)}:begin -->", end = $"<!-- {MarkerOf(section)}:end -->";
        int from = existing.IndexOf(begin, StringComparison.Ordinal), to = existing.IndexOf(end, StringComparison.Ordinal);
        string after = follows.TryGetValue(section, out var previous) ? $"<!-- {MarkerOf(previous)}:end -->" : "";
        int anchorAt = after.Length > 0 ? existing.IndexOf(after, StringComparison.Ordinal) : -1;
        existing = from >= 0 && to > from
            ? existing[..from] + text.TrimEnd() + existing[(to + end.Length)..]
            : anchorAt >= 0
                ? existing[..(anchorAt + after.Length)] + "\n\n" + text.TrimEnd() + existing[(anchorAt + after.Length)..]
                : existing.TrimEnd() + "\n\n" + text;
    }
    AtomicFile.Write(b.OutPath, s => s.Write(Encoding.UTF8.GetBytes(existing)));
    Console.WriteLine($"wrote the {string.Join(", ", only)} section(s) of {b.OutPath}");
    return;
}
foreach (var section in new[] { "search", "mixed", "compile", "speed" }) report.Append(marked.GetValueOrDefault(section));
// Speed sections of other kinds of CPU, measured on those machines, stay.
if (File.Exists(b.OutPath))
    foreach (Match m in Regex.Matches(File.ReadAllText(b.OutPath), @"<!-- (speed-[a-z0-9]+):begin -->.*?<!-- \1:end -->", RegexOptions.Singleline))
        if (m.Groups[1].Value != speedMarker) report.AppendLine(m.Value).AppendLine();

if (b.Write)
{
    AtomicFile.Write(b.OutPath, s => s.Write(Encoding.UTF8.GetBytes(report.ToString())));
    Console.WriteLine($"wrote {b.OutPath}");
}
else Console.WriteLine(report);
