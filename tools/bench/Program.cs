using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using OnnxViTQ;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;

// Writes BENCHMARKS.md: one file per section under Sections/ (its doc comment gives its command).
// Usage:
//   dotnet run --project tools/bench -c Release -- [--out BENCHMARKS.md] [--only accuracy,ablation,softmax,time,auto,auto-scores,exports,extra,memory,search,mixed,compile,speed,gemm,fuzz]
//       [--extra <folder of .onnx>] [--deit-tiny <model.onnx> --deit-tiny-calib <images.npy>]
//       [--models vit,swin-outliers] [--recipes minmax,adfq] [--bits W4A4] [--eval-images <images.npy> --eval-labels <labels.npy>] [--rounds N] [--no-write]
//       [--mutants N --seed S] (fuzz: hostile model files, only when named)
// --extra adds separately trained exports (tools/zoo/zoo.py train --variant alt), each with an
// outlier variant made in memory by the same tool as the committed ones. Sections between markers
// (memory, search, mixed, compile, speed) can be refreshed alone, leaving the rest of the file as it is.

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
if (args.Contains(FuzzSection.ChildFlag)) return FuzzSection.Child(args);
var b = new Bench(args);  // reads arguments and .npy headers only: ONNX Runtime is not started yet
var only = b.Only;
// The speed section's sessions share one spinning thread pool, which must be made with the
// process's ONNX Runtime environment, before anything else runs ONNX Runtime.
if ((only.Contains("speed") || only.Contains("gemm")) && !SessionThreads.SharedPool(Speed.Threads).Shared)
    throw new InvalidOperationException("ONNX Runtime's environment existed before the speed benchmark could create its shared thread pool");
if (only.Contains("compile") && (b.DeitTiny is null || b.DeitTinyCalib is null) && b.ListedExplicitly("--only"))
    throw new OnnxViTQException("--only compile needs --deit-tiny <model.onnx> --deit-tiny-calib <images.npy> (made by tools/zoo/zoo.py deit-tiny)");
if (only.Contains("gemm"))
{
    SpeedSection.PrintGemm(b);
    if (only.Count == 1) return 0;
}

// Every section between its own markers, so `--only <section>` refreshes it alone. The speed
// section's marker names the kernel path: a run on another kind of CPU keeps the others'.
string speedMarker = SpeedSection.Marker;
string MarkerOf(string section) => section == "speed" ? speedMarker : section;
string[] order = ["accuracy", "ablation", "softmax", "time", "auto", "auto-scores", "extra", "memory", "search", "mixed", "compile", "speed", "fuzz"];
var sections = new Dictionary<string, string>();
void Write(string section, Action<Bench> write)
{
    if (!only.Contains(section)) return;
    b.Report = new StringBuilder();
    write(b);
    sections[section] = $"<!-- {MarkerOf(section)}:begin -->\n{b.Report.ToString().TrimEnd()}\n<!-- {MarkerOf(section)}:end -->\n";
}
Write("accuracy", AccuracySection.Write);
Write("ablation", AblationSection.Write);
Write("softmax", SoftmaxSection.Write);
Write("time", TimeSection.Write);
Write("auto", AutoSection.Write);
Write("auto-scores", AutoScoresSection.Write);
Write("exports", ExportsSection.Write);
if (b.Extra is { } extra) Write("extra", bench => ExtraSection.Write(bench, extra));
Write("memory", bench => bench.Report.Append(MemorySection.Write(bench)));
Write("search", bench => bench.Report.Append(SearchSection.Write(bench)));
Write("mixed", bench => bench.Report.Append(MixedSection.Write(bench)));
if (b.DeitTiny is { } tiny && b.DeitTinyCalib is { } tinyCalib) Write("compile", bench => bench.Report.Append(CompileSection.Write(bench, tiny, tinyCalib)));
Write("speed", bench => bench.Report.Append(SpeedSection.Write(bench)));
Write("fuzz", FuzzSection.Write);

if (b.Write && b.ListedExplicitly("--only") && File.Exists(b.OutPath))
{
    // Refresh the named sections in the existing file; a section it lacks goes after the last
    // section before it in the full order (or at the end).
    string existing = File.ReadAllText(b.OutPath);
    foreach (var (section, text) in sections)
    {
        string begin = $"<!-- {MarkerOf(section)}:begin -->", end = $"<!-- {MarkerOf(section)}:end -->";
        int from = existing.IndexOf(begin, StringComparison.Ordinal), to = existing.IndexOf(end, StringComparison.Ordinal);
        if (from >= 0 && to > from)
        {
            existing = existing[..from] + text.TrimEnd() + existing[(to + end.Length)..];
            continue;
        }
        int anchorAt = -1, anchorLength = 0;
        foreach (var previous in order.TakeWhile(o => o != section))
        {
            string after = $"<!-- {MarkerOf(previous)}:end -->";
            if (existing.IndexOf(after, StringComparison.Ordinal) is var at and >= 0) (anchorAt, anchorLength) = (at, after.Length);
        }
        existing = anchorAt >= 0
            ? existing[..(anchorAt + anchorLength)] + "\n\n" + text.TrimEnd() + existing[(anchorAt + anchorLength)..]
            : existing.TrimEnd() + "\n\n" + text;
    }
    AtomicFile.Write(b.OutPath, s => s.Write(Encoding.UTF8.GetBytes(existing)));
    Console.WriteLine($"wrote the {string.Join(", ", sections.Keys)} section(s) of {b.OutPath}");
    return 0;
}

var file = new StringBuilder();
file.AppendLine("# Benchmarks");
file.AppendLine();
file.AppendLine($"Produced by `dotnet run --project tools/bench -c Release -- {string.Join(" ", args.Select(a => a.StartsWith('/') ? "<" + Path.GetFileName(a) + ">" : a))}` " +
                $"on {DateTime.UtcNow:yyyy-MM-dd} ({b.Runtime}). Every section sits between `<!-- name:begin/end -->` markers and can be refreshed alone " +
                "by `--only <name>`; each gives its own command and date.");
file.AppendLine($"FP32 and quantized models are evaluated side by side by ONNX Runtime (CPU) on the same {b.Labels.Length} Fashion-MNIST test images");
file.AppendLine("(`models/data`); the quantized model is the emitted ONNX file (the writer's bytes, read back), its QuantizeLinear/DequantizeLinear run");
file.AppendLine("as written (`session.disable_quant_qdq`: the model's meaning, the same on every CPU — ONNX Runtime's fused int8 kernels saturate");
file.AppendLine("u8×s8 sums on CPUs without VNNI and re-quantize float activations through MatMulNBits; README \"CPUs without VNNI\"). Calibration: the 512 bundled");
file.AppendLine("training images. Drop = FP32 top-1 − quantized top-1, in points (negative: the quantized model scored higher).");
file.AppendLine("`*-outliers.*` are the function-preserving outlier variants (`onnxvitq outliers`, models/README.md): same FP32");
file.AppendLine("predictions, post-LayerNorm activations with a few channels 8–50× larger, as in ImageNet ViTs.");
file.AppendLine();
foreach (var section in order)
    if (sections.TryGetValue(section, out var text)) file.AppendLine(text);
// Speed sections of other kinds of CPU, measured on those machines, stay.
if (File.Exists(b.OutPath))
    foreach (Match m in Regex.Matches(File.ReadAllText(b.OutPath), @"<!-- (speed-[a-z0-9-]+):begin -->.*?<!-- \1:end -->", RegexOptions.Singleline))
        if (m.Groups[1].Value != speedMarker) file.AppendLine(m.Value).AppendLine();

if (b.Write)
{
    AtomicFile.Write(b.OutPath, s => s.Write(Encoding.UTF8.GetBytes(file.ToString())));
    Console.WriteLine($"wrote {b.OutPath}");
}
else Console.WriteLine(file);
return 0;
