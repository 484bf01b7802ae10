using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using OnnxViTQ;
using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;

// Accuracy and memory benchmarks of the baseline recipes on the reference models; writes
// BENCHMARKS.md. Usage:
//   dotnet run --project tools/bench -c Release -- [--out BENCHMARKS.md] [--extra <folder of .onnx>] [--quick]
// --extra adds models that are not in the repository (e.g. separately trained exports from
// tools/zoo/zoo.py train --variant alt); they are evaluated on the same data.

var argList = args.ToList();
string Arg(string name, string fallback) { int i = argList.IndexOf(name); return i >= 0 && i + 1 < argList.Count ? argList[i + 1] : fallback; }
string root = FindRoot();
string outPath = Arg("--out", Path.Combine(root, "BENCHMARKS.md"));
string? extra = Arg("--extra", "") is { Length: > 0 } e ? e : null;
bool quick = argList.Contains("--quick");
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;

string models = Path.Combine(root, "models");
string calib = Path.Combine(models, "data", "calib_512.npy");
string evalImages = Path.Combine(models, "data", "eval_2000_images_u8.npy");
var labels = NpyFile.Open(Path.Combine(models, "data", "eval_2000_labels.npy")).ReadAllInt64();
string[] committed = ["vit.opset17.onnx", "vit.opset13.onnx", "deit.opset17.onnx", "deit.opset13.onnx", "swin.opset17.onnx", "swin.opset13.onnx"];
var recipes = new[] { "minmax", "percentile" };
var bitsList = quick ? new[] { "W8A8" } : new[] { "W8A8", "W6A6", "W4A4" };

var report = new StringBuilder();
report.AppendLine("# Benchmarks");
report.AppendLine();
report.AppendLine($"Produced by `dotnet run --project tools/bench -c Release{(extra is null ? "" : " -- --extra <folder>")}` on {DateTime.UtcNow:yyyy-MM-dd} " +
                  $"({Environment.ProcessorCount} cores, {RuntimeLabel()}). Every figure below was measured in that run; FP32 and quantized");
report.AppendLine("models are evaluated side by side by ONNX Runtime (CPU) on the same 2000 Fashion-MNIST test images (`models/data`).");
report.AppendLine("Calibration: the 512 bundled training images. Drop = FP32 top-1 − quantized top-1 (points); agreement = share of images where");
report.AppendLine("both models predict the same class. Quantize time = wall time of `Quantizer.Quantize` (calibration included), noisy on a shared machine.");
report.AppendLine();

void Section(string title, string folder, IEnumerable<string> files, string[] bitWidths)
{
    var drops = new List<(string Recipe, string Bits, double Drop)>();
    report.AppendLine($"## {title}");
    report.AppendLine();
    report.AppendLine("| model | FP32 top-1 | recipe | bits | top-1 | drop (pt) | agreement | quantize time |");
    report.AppendLine("|---|---:|---|---|---:|---:|---:|---:|");
    foreach (var file in files)
    {
        string path = Path.Combine(folder, file);
        var fp32Model = OnnxModelReader.Load(path);
        var eval = new NpyTensorSource(evalImages, ImagePreprocessing.ForModel(fp32Model, 3, 28, 28));
        var fp32 = ClassificationEvaluator.Predict(fp32Model, path, eval);
        var fpScore = ClassificationEvaluator.Score(fp32, labels);
        foreach (var recipe in recipes)
            foreach (var bits in bitWidths)
            {
                var model = OnnxModelReader.Load(path);
                var sw = Stopwatch.StartNew();
                Quantizer.Quantize(model, path, new NpyTensorSource(calib, null), new QuantizationOptions { Recipe = recipe, Bits = BitWidths.Parse(bits) });
                sw.Stop();
                var q = ClassificationEvaluator.Predict(OnnxModelReader.Parse(OnnxModelWriter.ToBytes(model)), path, eval);
                var qs = ClassificationEvaluator.Score(q, labels);
                drops.Add((recipe, bits, 100 * (fpScore.Top1 - qs.Top1)));
                string line = $"| {file} | {Pct(fpScore.Top1)} | {recipe} | {bits} | {Pct(qs.Top1)} | {100 * (fpScore.Top1 - qs.Top1):0.00} | {Pct(ClassificationEvaluator.Agreement(fp32, q))} | {sw.Elapsed.TotalSeconds:0.0} s |";
                report.AppendLine(line);
                Console.WriteLine(line);
            }
    }
    report.AppendLine();
    foreach (var g in drops.GroupBy(d => (d.Recipe, d.Bits)))
        report.AppendLine($"- {g.Key.Recipe} {g.Key.Bits}: worst drop {g.Max(d => d.Drop):0.00} pt, mean {g.Average(d => d.Drop):0.00} pt over {g.Count()} models");
    report.AppendLine();
}

Section("Reference models (committed)", models, committed, bitsList);
if (extra is not null)
{
    var files = Directory.GetFiles(extra, "*.onnx").Select(Path.GetFileName).Order().ToList();
    report.AppendLine("Models below are not in the repository: other members of the same families trained separately");
    report.AppendLine("(`/usr/bin/python3 tools/zoo/zoo.py train <family> --variant alt --seed 7 --minutes 10 --out <folder>`), to check that the");
    report.AppendLine("quantizer is not tuned to the committed files. `*.nofold.*` were exported with `do_constant_folding=False`");
    report.AppendLine("(weights reach MatMul through Transpose nodes), `*.static.*` with a fixed batch of 1. W8A8 only.");
    report.AppendLine();
    Section("Separately trained exports (not committed)", extra, files!, ["W8A8"]);
}

// Calibration memory: the CLI run as a child process per sample count; it reports its own peak
// working set. The calibration data is the 2000 uint8 evaluation images (distinct samples).
report.AppendLine("## Calibration memory");
report.AppendLine();
report.AppendLine("Peak working set of `onnxvitq quantize models/vit.opset17.onnx --calib models/data/eval_2000_images_u8.npy --samples N` (batch 32),");
report.AppendLine("one process per row. Memory is bounded by the batch size, not by the number of calibration samples.");
report.AppendLine();
report.AppendLine("| samples | peak memory | quantize time |");
report.AppendLine("|---:|---:|---:|");
string cli = Path.Combine(AppContext.BaseDirectory, "onnxvitq.dll");
foreach (int n in new[] { 128, 1024, 2000 })
{
    string tmp = Path.Combine(Path.GetTempPath(), $"onnxvitq-bench-{n}.onnx");
    var psi = new ProcessStartInfo("dotnet", [cli, "quantize", Path.Combine(models, "vit.opset17.onnx"), "-o", tmp, "--calib", evalImages, "--samples", n.ToString()])
    { RedirectStandardOutput = true, RedirectStandardError = true };
    using var p = Process.Start(psi)!;
    string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
    p.WaitForExit();
    if (p.ExitCode != 0) throw new Exception($"CLI failed: {output}");
    string peak = Regex.Match(output, @"peak memory\s*│\s*([^│]+?)\s*│").Groups[1].Value;
    string time = Regex.Match(output, @"time\s*│\s*([0-9.]+ s)").Groups[1].Value;
    report.AppendLine($"| {n} | {peak} | {time} |");
    Console.WriteLine($"{n} samples: peak {peak}, {time}");
    File.Delete(tmp);
}
report.AppendLine();
AtomicFile.Write(outPath, s => s.Write(Encoding.UTF8.GetBytes(report.ToString())));
Console.WriteLine($"wrote {outPath}");

static string Pct(double v) => $"{100 * v:0.00} %";

static string RuntimeLabel() =>
    $"{System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}, ONNX Runtime {typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetName().Version}";

static string FindRoot()
{
    for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "OnnxViTQ.sln"))) return dir.FullName;
    throw new OnnxViTQException("run from inside the OnnxViTQ repository");
}
