using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using OnnxViTQ;
using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Lowering;
using OnnxViTQ.Passes.Reparameterize;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;

// Accuracy, ablation, compile-time and memory benchmarks; writes BENCHMARKS.md. Usage:
//   dotnet run --project tools/bench -c Release -- [--out BENCHMARKS.md] [--only accuracy,ablation,softmax,time,extra,memory,search,mixed,compile,speed]
//       [--extra <folder of .onnx>] [--deit-tiny <model.onnx> --deit-tiny-calib <images.npy>]
//       [--models vit,swin-outliers] [--recipes minmax,adfq] [--bits W4A4] [--no-write]
// --extra adds separately trained exports (tools/zoo/zoo.py train --variant alt), each with an
// outlier variant made in memory by the same tool as the committed ones.

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
var argList = args.ToList();
string Arg(string name, string fallback) { int i = argList.IndexOf(name); return i >= 0 && i + 1 < argList.Count ? argList[i + 1] : fallback; }
string[]? List(string name) => Arg(name, "") is { Length: > 0 } v ? v.Split(',') : null;
string root = FindRoot();
string outPath = Arg("--out", Path.Combine(root, "BENCHMARKS.md"));
string? extra = Arg("--extra", "") is { Length: > 0 } e ? e : null;
string? deitTiny = Arg("--deit-tiny", "") is { Length: > 0 } d ? d : null;
string? deitTinyCalib = Arg("--deit-tiny-calib", "") is { Length: > 0 } dc ? dc : null;
var only = List("--only")?.ToHashSet() ?? ["accuracy", "ablation", "softmax", "time", "extra", "memory", "search", "mixed", "compile", "speed"];
// The speed section's sessions share one spinning thread pool, which must be made with the
// process's ONNX Runtime environment, before anything else runs ONNX Runtime.
if ((only.Contains("speed") || only.Contains("gemm")) && !SessionThreads.SharedPool(Speed.Threads).Shared)
    throw new InvalidOperationException("ONNX Runtime's environment existed before the speed benchmark could create its shared thread pool");
var modelFilter = List("--models");
string[] recipes = List("--recipes") ?? ["minmax", "percentile", "ptq4vit", "repq", "dopq", "adfq", "aocq"];
string[] bitsList = List("--bits") ?? ["W8A8", "W6A6", "W4A4"];
bool write = !argList.Contains("--no-write");

string models = Path.Combine(root, "models");
string calib = Path.Combine(models, "data", "calib_512.npy");
// The evaluation set: the committed 2000 test images unless --eval-images/--eval-labels name another
// (tools/zoo/zoo.py test-split writes the whole 10 000-image test split, for differences the
// 2000 images cannot resolve).
string committedEval = Path.Combine(models, "data", "eval_2000_images_u8.npy");
string evalImages = Arg("--eval-images", committedEval);
var labels = NpyFile.Open(Arg("--eval-labels", Path.Combine(models, "data", "eval_2000_labels.npy"))).ReadAllInt64();
if (NpyFile.Open(evalImages).Shape[0] != labels.Length)
    throw new OnnxViTQException($"--eval-images '{evalImages}' and --eval-labels hold different numbers of images");
string evalSet = evalImages == committedEval ? "the 2000 evaluation images" : $"the {labels.Length} images of {Path.GetFileName(evalImages)}";
string[] families = ["vit", "vit-outliers", "deit", "deit-outliers", "swin", "swin-outliers"];
var committed = families.SelectMany(f => new[] { $"{f}.opset17.onnx", $"{f}.opset13.onnx" })
    .Where(f => modelFilter is null || modelFilter.Any(m => f.StartsWith(m + ".", StringComparison.Ordinal))).ToList();
string runtime = $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}, " +
                 $"ONNX Runtime {typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetName().Version}";

var report = new StringBuilder();
report.AppendLine("# Benchmarks");
report.AppendLine();
report.AppendLine($"Produced by `dotnet run --project tools/bench -c Release -- {string.Join(" ", args.Select(a => a.StartsWith('/') ? "<" + Path.GetFileName(a) + ">" : a))}` " +
                  $"on {DateTime.UtcNow:yyyy-MM-dd} ({runtime}). Every figure outside the marked sections was measured in that run; the sections between " +
                  "`<!-- name:begin/end -->` markers (memory, search, mixed, speed) are refreshed alone by `--only <name>` and give their own command and date.");
report.AppendLine($"FP32 and quantized models are evaluated side by side by ONNX Runtime (CPU) on the same {labels.Length} Fashion-MNIST test images");
report.AppendLine("(`models/data`); the quantized model is the emitted ONNX file (the writer's bytes, read back), its QuantizeLinear/DequantizeLinear run");
report.AppendLine("as written (`session.disable_quant_qdq`: the model's meaning, the same on every CPU — ONNX Runtime's fused int8 kernels saturate");
report.AppendLine("u8×s8 sums on CPUs without VNNI and re-quantize float activations through MatMulNBits; README \"CPUs without VNNI\"). Calibration: the 512 bundled");
report.AppendLine("training images. Drop = FP32 top-1 − quantized top-1, in points (negative: the quantized model scored higher).");
report.AppendLine("`*-outliers.*` are the function-preserving outlier variants (`onnxvitq outliers`, models/README.md): same FP32");
report.AppendLine("predictions, post-LayerNorm activations with a few channels 8–50× larger, as in ImageNet ViTs.");
report.AppendLine();

var evaluated = new Dictionary<string, (int[] Predictions, double Top1)>();
(int[] Predictions, double Top1) Fp32(string path)
{
    if (evaluated.TryGetValue(path, out var r)) return r;
    var m = OnnxModelReader.Load(path);
    var p = ClassificationEvaluator.Predict(m, path, EvalSource(m));
    return evaluated[path] = (p, ClassificationEvaluator.Score(p, labels).Top1);
}
NpyTensorSource EvalSource(Model m) => new(evalImages, ImagePreprocessing.ForModel(m, 3, 28, 28));

// One quantize + evaluate; `load` gives a fresh FP32 model.
Outcome Measure(string name, Func<Model> load, Recipe recipe, string bits, (int[] Predictions, double Top1) fp32, int samples = 512, bool layerErrors = false,
    MixedPrecision? mixed = null)
{
    var model = load();
    var sw = Stopwatch.StartNew();
    var result = Quantizer.Quantize(model, name, new NpyTensorSource(calib, null),
        new QuantizationOptions { Bits = BitWidths.Parse(bits), CalibrationSamples = samples, MeasureLayerOutputs = layerErrors, MixedPrecision = mixed }, recipe);
    sw.Stop();
    var saved = OnnxModelReader.Parse(OnnxModelWriter.ToBytes(model));
    var q = ClassificationEvaluator.Predict(saved, name, EvalSource(saved));
    double top1 = ClassificationEvaluator.Score(q, labels).Top1;
    // Without the calibration statistics (row samples, histograms): a full run keeps every outcome
    // and holding them all took more memory than the machine has.
    var o = new Outcome(top1, 100 * (fp32.Top1 - top1), ClassificationEvaluator.Agreement(fp32.Predictions, q), sw.Elapsed.TotalSeconds, result with { Statistics = null },
        q.Select((p, i) => p == labels[i]).ToArray(), q.Select((p, i) => p == fp32.Predictions[i]).ToArray());
    Console.WriteLine($"{name} {recipe.Name} {(mixed is null ? bits : $"mixed {mixed.MinBits}-{mixed.MaxBits} avg {mixed.AverageBits}")}: top-1 {Pct(top1)}, drop {o.Drop:0.00}, agreement {Pct(o.Agreement)}, {o.Seconds:0.0} s");
    return o;
}

var outcomes = new List<(string Model, string Recipe, string Bits, Outcome O)>();

void Regenerate(string section) =>
    report.AppendLine($"Regenerate this table: `dotnet run --project tools/bench -c Release -- --only {section}{(section == "extra" ? " --extra <folder>" : section.Contains("time") ? " --deit-tiny <model> --deit-tiny-calib <images>" : "")} --out <file>`.");

void AccuracySection(string title, string section, IReadOnlyList<(string Name, Func<Model> Load, (int[], double) Fp32)> set, string[] bitWidths)
{
    report.AppendLine($"## {title}");
    report.AppendLine();
    Regenerate(section);
    report.AppendLine();
    report.AppendLine($"| model | FP32 | recipe | {string.Join(" | ", bitWidths.Select(b => $"{b} top-1 (drop)"))} | agreement {bitWidths[^1]} | quantize time |");
    report.AppendLine($"|---|---:|---|{string.Concat(bitWidths.Select(_ => "---:|"))}---:|---:|");
    foreach (var (name, load, fp32) in set)
    {
        foreach (var recipe in recipes)
        {
            var row = bitWidths.Select(b => Measure(name, load, Recipes.Get(recipe), b, fp32)).ToList();
            for (int i = 0; i < bitWidths.Length; i++) outcomes.Add((name, recipe, bitWidths[i], row[i]));
            report.AppendLine($"| {name} | {Pct(fp32.Item2)} | {recipe} | {string.Join(" | ", row.Select(o => $"{Pct(o.Top1)} ({o.Drop:0.00})"))} | {Pct(row[^1].Agreement)} | {row.Average(o => o.Seconds):0.0} s |");
        }
    }
    report.AppendLine();
    Verdicts(set.Select(s => s.Name).ToList(), bitWidths);
}

void Verdicts(List<string> names, string[] bitWidths)
{
    var limits = new Dictionary<string, double> { ["W8A8"] = 0.2, ["W6A6"] = 0.5, ["W4A4"] = 2.0 };
    report.AppendLine("Best recipe per model and bit width (the issue's targets: ≤ 0.2 pt at W8A8, ≤ 0.5 pt at W6A6, ≤ 2 pt at W4A4):");
    report.AppendLine();
    report.AppendLine($"| model | {string.Join(" | ", bitWidths)} |");
    report.AppendLine($"|---|{string.Concat(bitWidths.Select(_ => "---|"))}");
    foreach (var name in names)
    {
        var cells = bitWidths.Select(b =>
        {
            var best = outcomes.Where(o => o.Model == name && o.Bits == b).MinBy(o => o.O.Drop);
            string mark = limits.TryGetValue(b, out var l) ? (best.O.Drop <= l + 1e-9 ? "✓" : "✗") : "";
            return $"{best.Recipe} {best.O.Drop:0.00} {mark}";
        });
        report.AppendLine($"| {name} | {string.Join(" | ", cells)} |");
    }
    report.AppendLine();
    var outlierModels = names.Where(n => n.Contains("outliers")).ToList();
    if (outlierModels.Count > 0 && bitWidths.Contains("W4A4"))
    {
        var vitRecipes = recipes.Where(r => r is not ("minmax" or "percentile")).ToList();
        var failures = (from m in outlierModels
                        let baseline = outcomes.First(o => o.Model == m && o.Recipe == "minmax" && o.Bits == "W4A4").O.Top1
                        from r in vitRecipes
                        let top1 = outcomes.FirstOrDefault(o => o.Model == m && o.Recipe == r && o.Bits == "W4A4").O?.Top1
                        where top1 is not null && top1 <= baseline
                        select $"{r} on {m}").ToList();
        report.AppendLine(failures.Count == 0
            ? $"Every ViT recipe ({string.Join(", ", vitRecipes)}) beats minmax at W4A4 on every outlier variant above."
            : $"ViT recipes that do not beat minmax at W4A4: {string.Join(", ", failures)}.");
        report.AppendLine();
    }
    foreach (var g in outcomes.Where(o => names.Contains(o.Model)).GroupBy(o => (o.Recipe, o.Bits)).OrderBy(g => Array.IndexOf(recipes, g.Key.Recipe)).ThenBy(g => g.Key.Bits))
        Console.WriteLine($"  {g.Key.Recipe} {g.Key.Bits}: worst {g.Max(o => o.O.Drop):0.00}, mean {g.Average(o => o.O.Drop):0.00}");
}

if (only.Contains("accuracy"))
    AccuracySection("Accuracy: reference models and their outlier variants (committed)", "accuracy",
        committed.Select(f => (f, (Func<Model>)(() => OnnxModelReader.Load(Path.Combine(models, f))), Fp32(Path.Combine(models, f)))).ToList(), bitsList);

// ADFQ-ViT's ablation (the paper's Table 4): each of its quantizers alone and together, the rest
// of the recipe as in minmax, on the outlier variants.
if (only.Contains("ablation"))
{
    var adfq = Recipes.Get("adfq");
    var parts = new (string Name, TensorRole[] Roles)[]
    {
        ("none (minmax)", []), ("POQ", [TensorRole.PostLayerNorm]), ("SLQ", [TensorRole.PostGelu]), ("log2", [TensorRole.PostSoftmax]),
        ("POQ + SLQ", [TensorRole.PostLayerNorm, TensorRole.PostGelu]), ("POQ + SLQ + log2 (adfq)", [TensorRole.PostLayerNorm, TensorRole.PostGelu, TensorRole.PostSoftmax]),
    };
    string[] ablationBits = bitsList.Where(b => b != "W8A8").ToArray();
    report.AppendLine("## ADFQ-ViT ablation (outlier variants)");
    report.AppendLine();
    Regenerate("ablation");
    report.AppendLine("Each part of the `adfq` recipe alone and together (POQ: per-token outlier-aware post-LayerNorm; SLQ: shift-log2 post-GELU;");
    report.AppendLine("log2: post-Softmax); roles not listed get the `minmax` quantizer. Top-1 (drop in pt).");
    report.AppendLine();
    var ablationModels = committed.Where(f => f.Contains("outliers")).ToList();
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
            var row = ablationModels.Select(f => Measure(f, () => OnnxModelReader.Load(Path.Combine(models, f)), recipe, bits, Fp32(Path.Combine(models, f)))).ToList();
            report.AppendLine($"| {partName} | {bits} | {string.Join(" | ", row.Select(o => $"{Pct(o.Top1)} ({o.Drop:0.00})"))} | {row.Average(o => o.Drop):0.00} |");
        }
    report.AppendLine();
}

// Post-Softmax quantizers side by side: TanQ (ours) against log2, log√2 and uniform, inside the
// dopq recipe, on the opset-17 models.
if (only.Contains("softmax"))
{
    var dopq = Recipes.Get("dopq");
    report.AppendLine("## Post-Softmax quantizers: TanQ against log2, log√2 and uniform");
    report.AppendLine();
    Regenerate("softmax");
    report.AppendLine("The `dopq` recipe with only the post-Softmax quantizer changed. SQNR: mean over the post-Softmax sites of");
    report.AppendLine("10·log10(Σx²/Σ(x − x̂)²) on sampled calibration rows; top-1 drop in pt. (TanQ's design: docs/METHODS-NOTES.md.)");
    report.AppendLine();
    var softmaxModels = committed.Where(f => f.EndsWith(".opset17.onnx")).ToList();
    report.AppendLine($"| post-Softmax quantizer | bits | {string.Join(" | ", softmaxModels.Select(m => $"{m} SQNR / drop"))} |");
    report.AppendLine($"|---|---|{string.Concat(softmaxModels.Select(_ => "---:|"))}");
    foreach (var bits in bitsList)
        foreach (var kind in new[] { "tan", "log2", "log-sqrt2", "uniform" })
        {
            var recipe = dopq with
            {
                Name = $"dopq[{kind}]",
                Quantizers = dopq.Quantizers with { Roles = new Dictionary<TensorRole, QuantizerChoice>(dopq.Quantizers.Roles) { [TensorRole.PostSoftmax] = new(kind) } },
            };
            var cells = softmaxModels.Select(f =>
            {
                var o = Measure(f, () => OnnxModelReader.Load(Path.Combine(models, f)), recipe, bits, Fp32(Path.Combine(models, f)));
                double sqnr = o.Result.Plan.Sites.Where(s => s.Role == TensorRole.PostSoftmax && s.Error is not null).Average(s => s.Error!.SqnrDb);
                return $"{sqnr:0.0} dB / {o.Drop:0.00}";
            });
            report.AppendLine($"| {kind} | {bits} | {string.Join(" | ", cells)} |");
        }
    report.AppendLine();
}

if (only.Contains("time"))
{
    report.AppendLine("## Quantize wall time per recipe");
    report.AppendLine();
    Regenerate("accuracy,time");
    report.AppendLine("`Quantizer.Quantize` (calibration through ONNX Runtime included), mean over the runs above per recipe on the committed");
    report.AppendLine("models (512 calibration images, 28×28).");
    if (deitTiny is not null && deitTinyCalib is not null)
        report.AppendLine($"DeiT-Tiny-shaped model: 224×224, 197 tokens, dim 192, depth 12, 3 heads, random weights, exported by `tools/zoo/zoo.py deit-tiny`; 256 calibration images (`{Path.GetFileName(deitTinyCalib)}`), W8A8.");
    report.AppendLine();
    report.AppendLine($"| recipe | reference models, mean | {(deitTiny is null ? "" : "DeiT-Tiny-shaped, 256 images | ")}");
    report.AppendLine($"|---|---:|{(deitTiny is null ? "" : "---:|")}");
    foreach (var recipe in recipes)
    {
        var runs = outcomes.Where(o => o.Recipe == recipe && committed.Contains(o.Model)).ToList();
        string small = runs.Count > 0 ? $"{runs.Average(o => o.O.Seconds):0.0} s" : "–";
        string tiny = "";
        if (deitTiny is not null && deitTinyCalib is not null)
        {
            var model = OnnxModelReader.Load(deitTiny);
            var sw = Stopwatch.StartNew();
            var result = Quantizer.Quantize(model, deitTiny, new NpyTensorSource(deitTinyCalib, ImagePreprocessing.ForModel(model, 3, 224, 224)),
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

if (only.Contains("extra") && extra is not null)
{
    var files = Directory.GetFiles(extra, "*.opset17.onnx").Where(f => !f.Contains(".nofold.") && !f.Contains(".static.")).Order().ToList();
    var set = new List<(string, Func<Model>, (int[], double))>();
    foreach (var file in files)
    {
        string name = Path.GetFileName(file);
        set.Add((name, () => OnnxModelReader.Load(file), Fp32(file)));
        Model Outliers()
        {
            var m = OnnxModelReader.Load(file);
            new PassManager([new InjectOutlierChannels(0.02, 8, 50, 1, file)]).Run(m, new PassContext());
            return m;
        }
        string outlierName = name.Replace(".opset17", "-outliers.opset17");
        var om = Outliers();
        var fp = ClassificationEvaluator.Predict(om, outlierName, EvalSource(om));
        set.Add((outlierName, Outliers, (fp, ClassificationEvaluator.Score(fp, labels).Top1)));
    }
    report.AppendLine("Models below are not in the repository: other members of the same families trained separately");
    report.AppendLine("(`/usr/bin/python3 tools/zoo/zoo.py train <family> --variant alt --seed 7 --minutes 10 --threads 1 --out <folder>`: other sizes,");
    report.AppendLine("patch sizes, depths and seed), to check that the recipes are not tuned to the committed files; each with its own outlier");
    report.AppendLine("variant made in memory by the same tool (`InjectOutlierChannels`, fraction 0.02, factors 8–50, seed 1).");
    report.AppendLine();
    AccuracySection("Accuracy: separately trained exports (not committed) and their outlier variants", "extra", set, bitsList);
}

var memoryReport = new StringBuilder();
if (only.Contains("memory"))
{
    var mr = memoryReport;
    mr.AppendLine("<!-- memory:begin -->");
    // Calibration memory: the CLI run as a child process per sample count; it reports its own peak
    // working set. The calibration data is the 2000 uint8 evaluation images (distinct samples).
    mr.AppendLine("## Calibration memory");
    mr.AppendLine();
    mr.AppendLine("Regenerate this table: `dotnet run --project tools/bench -c Release -- --only memory` (refreshes this section of BENCHMARKS.md alone).");
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
            var psi = new ProcessStartInfo("dotnet", [cli, "quantize", Path.Combine(models, "vit.opset17.onnx"), "-o", tmp, "--calib", committedEval, "--samples", n.ToString(),
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
    mr.AppendLine("<!-- memory:end -->");
    mr.AppendLine();
}
report.Append(memoryReport);

// Liu et al. 2021 (issue: search and correction): interval search + bias correction against the
// baselines, on every committed model, between markers so `--only search` refreshes it alone.
var searchReport = new StringBuilder();
if (only.Contains("search"))
{
    var r = searchReport;
    string[] searchBits = ["W8A8", "W6A6", "W4A4"];
    r.AppendLine("<!-- search:begin -->");
    r.AppendLine("## Liu et al. 2021: interval search and bias correction");
    r.AppendLine();
    r.AppendLine($"Regenerate: `dotnet run --project tools/bench -c Release -- --only search` ({DateTime.UtcNow:yyyy-MM-dd}, {runtime}, {MachineInfo.CpuName()}); mixed precision and compile time: the next sections.");
    r.AppendLine("`liu2021` = `choose-ranges` (each activation role starts from its 99.99th percentile or its observed min/max, whichever gives the lower");
    r.AppendLine("mean KL of the whole quantized model to FP32 on the calibration images), `search-intervals` over the linear layers (20 candidates in");
    r.AppendLine("[0.5, 1.2]·Δ₀, up to 20 alternating rounds, Pearson over the whole sampled output) and `correct-bias` (kept only when it lowers that mean KL by more than");
    r.AppendLine("1.5 standard errors and no fewer calibration images keep their FP32 class; `bc` says whether it was kept). `liu2021 −bc`: without bias correction. `liu2021 +qk`: the Q·Kᵀ operands");
    r.AppendLine("searched too (`products=scores`: per-head Pearson of the attention maps − 1·ranking loss, on the first 8 calibration images).");
    r.AppendLine($"Drop in points on {evalSet}; layer SQNR is the mean over the linear layers of X·W against Q(X)·Q(W) (bias");
    r.AppendLine("correction included) on the calibration rows.");
    r.AppendLine();
    var liu = Recipes.Get("liu2021");
    var noBias = liu with { Name = "liu2021 −bc", Passes = liu.Passes.Where(p => p.Name != "correct-bias").ToList() };
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
    foreach (var file in committed)
    {
        var path = Path.Combine(models, file);
        var fp32 = Fp32(path);
        foreach (var bits in searchBits)
        {
            var o = candidates.Select(c => Measure(file, () => OnnxModelReader.Load(path), c, bits, fp32, layerErrors: true)).ToArray();
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
    r.AppendLine("<!-- search:end -->");
    r.AppendLine();
}

// Mixed precision (issue: search and correction), between its own markers so `--only mixed`
// refreshes it without re-running the interval-search table. Accuracy only: it can run beside
// other work; the compile times (`--only compile`) need a quiet machine.
var mixedReport = new StringBuilder();
if (only.Contains("mixed"))
{
    var r = mixedReport;
    var liu = Recipes.Get("liu2021");
    // Liu et al.'s own sensitivity (nuclear norm × module output error), the mixed-precision pass's score=nuclear.
    int calibrate = liu.Passes.ToList().FindIndex(p => p.Name == "collect-statistics");
    Recipe LiuMixed(double average, string score) => liu with
    {
        Name = $"liu2021 mixed {score}",
        Passes = [.. liu.Passes.Take(calibrate + 1),
                  new PassStep("mixed-precision", new Dictionary<string, string> { ["min"] = "4", ["max"] = "8", ["avg"] = average.ToString(CultureInfo.InvariantCulture), ["score"] = score }),
                  .. liu.Passes.Skip(calibrate + 1)],
    };
    r.AppendLine("<!-- mixed:begin -->");
    r.AppendLine("## Liu et al. 2021: mixed precision");
    r.AppendLine();
    r.AppendLine($"Regenerate: `dotnet run --project tools/bench -c Release -- --only mixed{(modelFilter is null ? "" : $" --models {string.Join(",", modelFilter)}")}{(evalImages == committedEval ? "" : " --eval-images <" + Path.GetFileName(evalImages) + "> --eval-labels <labels.npy>")}` ({DateTime.UtcNow:yyyy-MM-dd}, {runtime}, {MachineInfo.CpuName()}); compile time: the next section.");
    if (evalImages != committedEval)
        r.AppendLine($"Evaluation images: {evalSet} (`/usr/bin/python3 tools/zoo/zoo.py test-split` writes the whole 10 000-image test split, which contains the committed 2000; " +
                     "on the clean models both W6A6 forms sit at FP32's top-1, and the 2000 images could not tell them apart).");
    r.AppendLine("`liu2021 --bits mixed:4-8 --avg-bits N`: one width per attention/MLP module; patch embedding, head and image at 8 bits, outside the");
    r.AppendLine("average. A module's sensitivity at each width is measured by ONNX Runtime with that module alone quantized, on the first 32");
    r.AppendLine("calibration images: `kl` (the default) = the model's mean KL to FP32; `nuclear` (Liu et al.'s form, opset-17 exports only, for");
    r.AppendLine($"time) = nuclear norm of the module's FP32 output × that output's squared error. Drop in points on {evalSet};");
    r.AppendLine("`avg` is the weight-weighted average the allocation reached.");
    r.AppendLine($"Mixed 6 against minmax W6A6, paired over the same {labels.Length} images (± one standard error of the paired difference): Δ drop = mixed's drop −");
    r.AppendLine("minmax's (negative: mixed loses less), Δ agreement = mixed's top-1 agreement with FP32 − minmax's (positive: mixed is closer to FP32).");
    r.AppendLine("Verdict on the drop: ✓ / ✗ when the difference exceeds 2 standard errors, ≈ when it does not (then the agreement's verdict follows).");
    r.AppendLine();
    r.AppendLine("| model | minmax W6A6 | liu2021 W6A6 | liu2021 mixed avg ≤ 6 | mixed avg ≤ 6, nuclear score | liu2021 mixed avg ≤ 5 | liu2021 W5A5 | Δ drop, mixed 6 − minmax W6A6 | Δ agreement | mixed 6 beats minmax W6A6 |");
    r.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    var verdicts = new List<(string Drop, string Agreement, double MinmaxDrop, double MixedDrop)>();
    foreach (var file in committed)
    {
        var path = Path.Combine(models, file);
        var fp32 = Fp32(path);
        var minmax6 = Measure(file, () => OnnxModelReader.Load(path), Recipes.Get("minmax"), "W6A6", fp32);
        var liu6 = Measure(file, () => OnnxModelReader.Load(path), liu, "W6A6", fp32);
        var mixed6 = Measure(file, () => OnnxModelReader.Load(path), LiuMixed(6, "kl"), "W8A8", fp32);
        var nuclear6 = file.Contains(".opset17.") ? Measure(file, () => OnnxModelReader.Load(path), LiuMixed(6, "nuclear"), "W8A8", fp32) : null;
        var mixed5 = Measure(file, () => OnnxModelReader.Load(path), LiuMixed(5, "kl"), "W8A8", fp32);
        var liu5 = Measure(file, () => OnnxModelReader.Load(path), liu, "W5A5", fp32);
        string Mixed(Outcome o) => $"{o.Drop:0.00} (avg {o.Result.ModuleBits!.AverageBits:0.##})";
        var (dropDiff, dropSe) = Outcome.Paired(minmax6.Correct, mixed6.Correct); // minmax right − mixed right = mixed's drop − minmax's
        var (agreeDiff, agreeSe) = Outcome.Paired(mixed6.Agrees, minmax6.Agrees);
        static string Verdict(double better, double se) => better > 2 * se ? "✓" : better < -2 * se ? "✗" : "≈";
        string drop = Verdict(-dropDiff, dropSe), agreement = Verdict(agreeDiff, agreeSe);
        verdicts.Add((drop, agreement, minmax6.Drop, mixed6.Drop));
        r.AppendLine($"| {file} | {minmax6.Drop:0.00} | {liu6.Drop:0.00} | {Mixed(mixed6)} | {(nuclear6 is null ? "—" : Mixed(nuclear6))} | {Mixed(mixed5)} | {liu5.Drop:0.00} " +
                     $"| {dropDiff:+0.00;−0.00;0.00} ± {dropSe:0.00} | {agreeDiff:+0.00;−0.00;0.00} ± {agreeSe:0.00} | {(drop == "≈" ? $"≈ top-1, {agreement} agreement" : $"{drop} top-1")} |");
    }
    r.AppendLine();
    if (verdicts.Count > 0)
    {
        int Count(Func<(string Drop, string Agreement, double, double), bool> f) => verdicts.Count(f);
        r.AppendLine($"Over the {verdicts.Count} models: mean drop {verdicts.Average(v => v.MinmaxDrop):0.00} pt for minmax W6A6 against {verdicts.Average(v => v.MixedDrop):0.00} for mixed avg 6. " +
                     $"Mixed 6 loses significantly less top-1 on {Count(v => v.Drop == "✓")}, more on {Count(v => v.Drop == "✗")}; where top-1 ties " +
                     $"it is significantly closer to FP32 by agreement on {Count(v => v.Drop == "≈" && v.Agreement == "✓")}, farther on {Count(v => v.Drop == "≈" && v.Agreement == "✗")}, " +
                     $"and level on {Count(v => v.Drop == "≈" && v.Agreement == "≈")}.");
        r.AppendLine();
    }
    r.AppendLine("<!-- mixed:end -->");
    r.AppendLine();
}

// Compile time per recipe on the DeiT-Tiny-shaped model (issue: search and correction), between
// its own markers; a timing, so run it on a quiet machine.
var compileReport = new StringBuilder();
if (only.Contains("compile") && (deitTiny is null || deitTinyCalib is null) && List("--only") is not null)
    throw new OnnxViTQException("--only compile needs --deit-tiny <model.onnx> --deit-tiny-calib <images.npy> (made by tools/zoo/zoo.py deit-tiny)");
if (only.Contains("compile") && deitTiny is not null && deitTinyCalib is not null)
{
    var r = compileReport;
    r.AppendLine("<!-- compile:begin -->");
    r.AppendLine("## Liu et al. 2021: compile time");
    r.AppendLine();
    r.AppendLine($"Regenerate: `dotnet run --project tools/bench -c Release -- --only compile --deit-tiny <model.onnx> --deit-tiny-calib <images.npy>` ({DateTime.UtcNow:yyyy-MM-dd}, {runtime}, {MachineInfo.CpuName()}).");
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
    r.AppendLine("<!-- compile:end -->");
    r.AppendLine();
}

// Runtime speed (issue: native runtime ops). Written between markers so `--only speed` refreshes
// this section of BENCHMARKS.md alone. One section per native kernel path (a kind of CPU): a run
// on another kind of machine adds or refreshes its own and keeps the others.
string kernelPath = NativeOps.IsAvailable ? NativeOps.KernelPath : "none";
string speedMarker = $"speed-{kernelPath}";
// `--only gemm`: the peak and the per-GEMM table alone, printed, not written (they are part of the
// speed section, which is regenerated whole).
if (only.Contains("gemm"))
{
    var r = new StringBuilder();
    double allCores = kernelPath == "avx512vnni" ? Speed.VnniPeak().AllCores : 0;
    r.AppendLine($"2-core VNNI peak {allCores:0} GOPS");
    AppendGemmTable(r, allCores, int.Parse(Arg("--rounds", "30")));
    Console.WriteLine(r);
    if (only.Count == 1) return;
}

var speedReport = new StringBuilder();
if (only.Contains("speed"))
{
    var r = speedReport;
    int rounds = int.Parse(Arg("--rounds", "30"));
    bool vnni = kernelPath == "avx512vnni";
    r.AppendLine($"<!-- {speedMarker}:begin -->");
    r.AppendLine($"## Runtime speed: native ops against ONNX Runtime ({(vnni ? "AVX-512 VNNI CPU" : $"CPU without VNNI, native path `{kernelPath}`")})");
    r.AppendLine();
    r.AppendLine($"Regenerate: `dotnet run --project tools/bench -c Release -- --only speed{(deitTiny is null ? "" : " --deit-tiny <model.onnx> --deit-tiny-calib <images.npy>")}` " +
                 $"({DateTime.UtcNow:yyyy-MM-dd}, {runtime}, {MachineInfo.CpuName()}, native kernel path `{kernelPath}`). All latencies: {Speed.Threads} intra-op threads (one pool shared by all sessions, idle threads spinning), ORT_ENABLE_ALL, the candidates of one table");
    r.AppendLine($"run interleaved round by round ({rounds} rounds after 3 warm-up rounds), median per candidate; ratios are against FP32 in the same run.");
    if (OrtInt8Kernels.SaturatesU8S8)
        r.AppendLine("On this CPU ONNX Runtime's u8×s8 kernels saturate int16 pair sums, so the portable QDQ model does not compute its plan exactly when run fused (as timed here); the `ort` models store such weights as uint8 (exact u8×u8 kernels).");
    r.AppendLine();
    double allCores = 0;
    if (vnni)
    {
        var (perCore, all) = Speed.VnniPeak();
        allCores = all;
        r.AppendLine($"**int8 VNNI peak** (register-only loop of 20 independent `vpdpbusd zmm` chains; each instruction is 64 u8×s8 multiply-adds = 128 ops;");
        r.AppendLine($"GOPS = 128 × instructions / seconds; best of {Speed.PeakTries} tries of 0.5 s): **{perCore:0} GOPS on one core, {allCores:0} GOPS on {Speed.Threads} cores at once** — the GEMM figures below are against the {Speed.Threads}-core figure.");
    }
    else if (kernelPath == "avx2")
    {
        // No VNNI: the GEMM is read against the instruction it is built on, measured the same way.
        var madd = Speed.Avx2Peak(0);
        var maddubs = Speed.Avx2Peak(1);
        var fma = Speed.Avx2Peak(2);
        allCores = madd.AllCores;
        r.AppendLine($"No VNNI on this CPU: the native kernels run the `{kernelPath}` path (exact 16-bit multiply-adds). **Measured peaks** (register-only assembly loops, 6 independent integer");
        r.AppendLine($"or 10 FMA accumulator chains; GOPS = 2 × multiply-adds per instruction × instructions / seconds; best of {Speed.PeakTries} tries of 0.5 s), one core / both cores at once (one thread each): ");
        r.AppendLine($"`vpmaddwd` + `vpaddd` (16 exact int16 MACs; the native GEMM) **{madd.PerCore:0} / {madd.AllCores:0} GOPS**; `vpmaddubsw` + `vpmaddwd` + `vpaddd` (32 u8×s8 MACs, int16-saturating pair sums; ONNX Runtime's AVX2 u8×s8 kernel) {maddubs.PerCore:0} / {maddubs.AllCores:0} GOPS;");
        r.AppendLine($"FP32 `vfmadd` (8 MACs) {fma.PerCore:0} / {fma.AllCores:0} GFLOPS. \"% of peak\" below is against the 2-core `vpmaddwd` figure. The exact int16 multiply-add's ceiling is");
        r.AppendLine($"{madd.PerCore / fma.PerCore:0.00}× (one core) / {madd.AllCores / fma.AllCores:0.00}× (both) the FP32 FMA's here, the saturating u8×s8 one {maddubs.PerCore / fma.PerCore:0.00}× / {maddubs.AllCores / fma.AllCores:0.00}×" +
                     (madd.AllCores / fma.AllCores < 2 && madd.PerCore / fma.PerCore < 2 ? ": a GEMM-bound model cannot reach 2× FP32 on this CPU whatever the kernel." : ". These shared 2-vCPU machines are noisy: peaks measured minutes apart differed by up to 30 %."));
        Console.WriteLine($"avx2 peaks (1 core / 2 cores): madd {madd.PerCore:0}/{madd.AllCores:0}, maddubs {maddubs.PerCore:0}/{maddubs.AllCores:0}, fma {fma.PerCore:0}/{fma.AllCores:0}");
    }
    else
        r.AppendLine($"No VNNI on this CPU: the native kernels run the `{kernelPath}` path, so there is no VNNI peak to compare against.");
    r.AppendLine();
    AppendGemmTable(r, allCores, rounds);

    r.AppendLine("### Attention products (com.onnxvitq.QuantizedMatMul, both operands quantized per tensor in the op)");
    r.AppendLine();
    r.AppendLine("The DeiT-Tiny shapes per image (3 heads, 197 tokens, head width 64) at batch 1 and 8: S×M×K×N = slices × rows × inner × columns.");
    r.AppendLine("portable QDQ = QuantizeLinear/DequantizeLinear on both operands then MatMul, as ONNX Runtime runs it (ORT_ENABLE_ALL: fused into its u8×u8 kernels); FP32 = MatMul.");
    r.AppendLine($"Native path `{kernelPath}`: {(vnni ? "`vpdpwssd` (the int16 VNNI multiply-add, 32 MACs per instruction, half the u8×s8 `vpdpbusd`'s)" : "`vpmaddwd` + `vpaddd`")} on int16 centred codes, summed exactly in int32.");
    r.AppendLine("`--format native` runs this op only for adfq's log2 softmax·V (lower-native-products with left=log2); the uniform products of the attentions it recognises run inside");
    r.AppendLine("com.onnxvitq.QuantizedAttention (`fuse-native-attention`, its products on the linear layers' u8×s8 GEMM; what it buys is in the end-to-end tables), and other uniform products stay QDQ unless a recipe names `lower-native-products`.");
    r.AppendLine();
    r.AppendLine("| product | S×M×K×N | native ms | portable QDQ ms | FP32 ms | native vs QDQ | native vs FP32 |");
    r.AppendLine("|---|---|---:|---:|---:|---:|---:|");
    var productVsQdq = new List<double>();
    foreach (var (label, sl, m, k, n) in new[] { ("Q·Kᵀ", 3, 197, 64, 197), ("softmax·V", 3, 197, 197, 64), ("Q·Kᵀ", 24, 197, 64, 197), ("softmax·V", 24, 197, 197, 64) })
    {
        var x = Speed.RandomInput((long)sl * m * k, 3);
        var t = Speed.MedianMs([Speed.ProductModel(sl, m, k, n, "native"), Speed.ProductModel(sl, m, k, n, "qdq"), Speed.ProductModel(sl, m, k, n, "float")], "x", x, [sl, m, k], rounds * 5);
        r.AppendLine($"| {label} | {sl}×{m}×{k}×{n} | {t[0]:0.000} | {t[1]:0.000} | {t[2]:0.000} | {t[1] / t[0]:0.00}× | {t[2] / t[0]:0.00}× |");
        productVsQdq.Add(t[1] / t[0]);
        Console.WriteLine($"product {label} {sl}x{m}x{k}x{n}: native {t[0]:0.000} ms, qdq {t[1]:0.000} ms, fp32 {t[2]:0.000} ms");
    }
    r.AppendLine();
    r.AppendLine(productVsQdq.All(v => v > 1)
        ? "Here the op is faster than the fused QDQ product on every shape in this run; it stays opt-in because other runs, on this CPU and the other measured, found it slower on Q·Kᵀ at batch 8 (README)."
        : $"Native against QDQ here: {string.Join(", ", productVsQdq.Select(v => $"{v:0.00}×"))}; not faster on every shape, hence opt-in.");
    r.AppendLine();

    r.AppendLine("### Fusions");
    r.AppendLine();
    r.AppendLine("GELU into fc1 (`fuse-native-gelu`, opt-in: not part of `--format native` since it measured slower than this table's separate form): com.onnxvitq.QuantizedLinear (int8 weights, per-token activations) followed by the");
    r.AppendLine("exporter's erf GELU nodes (ONNX Runtime fuses them into its Gelu op) against the same op computing GELU in its epilogue, on the DeiT-Tiny fc1 shape at batch 1 and 8.");
    r.AppendLine("LayerNorm into the linear that reads it (`fuse-native-layernorm`, part of `--format native`): ONNX Runtime's LayerNormalization then the op, against the");
    r.AppendLine("op normalising each row itself before quantizing it, on the DeiT-Tiny qkv shape. The attention fusion (`fuse-native-attention`) is measured on whole models: the end-to-end tables' \"attention not fused\" rows.");
    r.AppendLine();
    r.AppendLine("| fusion | M×K×N | separate ms | fused ms | fused vs separate |");
    r.AppendLine("|---|---|---:|---:|---:|");
    foreach (var (fusion, m, k, n) in new[] { ("GELU", 197, 192, 768), ("GELU", 1576, 192, 768), ("LayerNorm", 197, 192, 576), ("LayerNorm", 1576, 192, 576) })
    {
        var x = Speed.RandomInput((long)m * k, 1);
        byte[] Form(string f) => fusion == "GELU" ? Speed.GemmModel(m, k, n, 8, gelu: f) : Speed.GemmModel(m, k, n, 8, layerNorm: f);
        var t = Speed.MedianMs([Form("separate"), Form("fused")], "x", x, [m, k], rounds * 5);
        r.AppendLine($"| {fusion} | {m}×{k}×{n} | {t[0]:0.000} | {t[1]:0.000} | {t[0] / t[1]:0.00}× |");
        Console.WriteLine($"{fusion} fusion {m}x{k}x{n}: separate {t[0]:0.000} ms, fused {t[1]:0.000} ms");
    }
    r.AppendLine();

    var speedModels = new List<(string Name, string Path, ICalibrationSource Calib)>();
    if (deitTiny is not null && deitTinyCalib is not null)
    {
        var dm = OnnxModelReader.Load(deitTiny);
        speedModels.Add(("DeiT-Tiny-shaped (224², 197 tokens, dim 192, depth 12)", deitTiny, new NpyTensorSource(deitTinyCalib, ImagePreprocessing.ForModel(dm, 3, 224, 224))));
    }
    foreach (var f in new[] { "vit.opset17.onnx", "deit.opset17.onnx", "swin.opset17.onnx" })
        speedModels.Add((f, Path.Combine(models, f), new NpyTensorSource(calib, null)));
    // What fuse-native-attention buys: the same native model with that pass removed, so the
    // attention runs as before it existed: ONNX Runtime's fused QDQ products, Softmax, slices and
    // transposes.
    var minmax = Recipes.Get("minmax");
    var unfusedAttention = minmax with { Removed = ["fuse-native-attention"] };
    var variants = new (string Label, string Recipe, string Bits, OutputFormat Format, Recipe? Custom)[]
    {
        ("portable QDQ, minmax W8A8", "minmax", "W8A8", OutputFormat.Portable, null),
        ("ort, minmax W8A8", "minmax", "W8A8", OutputFormat.Ort, null),
        ("ort, minmax W4A8", "minmax", "W4A8", OutputFormat.Ort, null),
        ("native, minmax W8A8", "minmax", "W8A8", OutputFormat.Native, null),
        ("native, minmax W8A8, attention not fused", "minmax", "W8A8", OutputFormat.Native, unfusedAttention),
        ("native, minmax W4A8", "minmax", "W4A8", OutputFormat.Native, null),
        ("portable, adfq W8A8", "adfq", "W8A8", OutputFormat.Portable, null),
        ("native, adfq W8A8", "adfq", "W8A8", OutputFormat.Native, null),
    };
    r.AppendLine("### End-to-end latency");
    r.AppendLine();
    r.AppendLine("Each quantized model is the file `onnxvitq quantize --recipe R --bits B --format F` writes (64 calibration images); same plan across formats of one recipe.");
    r.AppendLine("`ort`: each linear layer as the faster exact ONNX Runtime form measured on this machine while quantizing (QDQ or com.microsoft.MatMulIntegerToFloat).");
    r.AppendLine("Input: a random image batch. Size: the .onnx file.");
    r.AppendLine();
    var fusedAttentions = new Dictionary<string, int>();
    foreach (var (name, path, source) in speedModels)
    {
        var fp32Bytes = File.ReadAllBytes(path);
        var fp32Model = OnnxModelReader.Load(path);
        var input = ImageInput.Of(fp32Model, path);
        var bytes = new List<byte[]> { fp32Bytes };
        fusedAttentions[name] = 0;
        foreach (var v in variants)
        {
            var m = OnnxModelReader.Load(path);
            var options = new QuantizationOptions { Recipe = v.Recipe, Bits = BitWidths.Parse(v.Bits), CalibrationSamples = 64, BatchSize = 16, Format = v.Format };
            if (v.Custom is { } custom) Quantizer.Quantize(m, path, source, options, custom);
            else Quantizer.Quantize(m, path, source, options);
            bytes.Add(OnnxModelWriter.ToBytes(m));
            if (v.Label == "native, minmax W8A8") fusedAttentions[name] = m.Graph.Nodes.Count(n => n.OpType == FuseNativeAttention.OpType);
        }
        r.AppendLine($"**{name}**");
        r.AppendLine();
        r.AppendLine("| model | batch 1 ms | vs FP32 | batch 8 ms | vs FP32 | file | vs FP32 |");
        r.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
        var perBatch = new Dictionary<int, double[]>();
        foreach (int batch in new[] { 1, 8 })
        {
            var x = Speed.RandomInput((long)batch * input.Channels * input.Height * input.Width, 2);
            perBatch[batch] = Speed.MedianMs(bytes, input.Name, x, input.Shape(batch), batch == 1 ? rounds : Math.Max(10, rounds / 2));
        }
        string[] rowLabels = ["FP32", .. variants.Select(v => v.Label)];
        for (int i = 0; i < bytes.Count; i++)
        {
            double b1 = perBatch[1][i], b8 = perBatch[8][i];
            r.AppendLine($"| {rowLabels[i]} | {b1:0.00} | {perBatch[1][0] / b1:0.00}× | {b8:0.00} | {perBatch[8][0] / b8:0.00}× | {bytes[i].Length / 1048576.0:0.00} MiB | {(double)bytes[i].Length / bytes[0].Length:0.000} |");
            Console.WriteLine($"{name} {rowLabels[i]}: b1 {b1:0.00} ms ({perBatch[1][0] / b1:0.00}x), b8 {b8:0.00} ms ({perBatch[8][0] / b8:0.00}x), {bytes[i].Length} bytes");
        }
        r.AppendLine();
        // The fastest stock-ONNX-Runtime int8 model of the same plan: portable QDQ or --format ort.
        int At(string label) => Array.IndexOf(rowLabels, label);
        int native8 = At("native, minmax W8A8"), portable8 = At("portable QDQ, minmax W8A8"), ort8 = At("ort, minmax W8A8");
        string Versus(int batch) => $"{Math.Min(perBatch[batch][portable8], perBatch[batch][ort8]) / perBatch[batch][native8]:0.00}×";
        r.AppendLine($"Native W8A8 against the faster of portable QDQ and `--format ort` (W8A8): {Versus(1)} at batch 1, {Versus(8)} at batch 8.");
        int unfused = At("native, minmax W8A8, attention not fused");
        r.AppendLine($"`fuse-native-attention` ({(fusedAttentions[name] == 0 ? "no attention of this model has the form it fuses" : $"{fusedAttentions[name]} attention(s) fused")}): " +
                     $"{perBatch[1][unfused] / perBatch[1][native8]:0.00}× at batch 1, {perBatch[8][unfused] / perBatch[8][native8]:0.00}× at batch 8.");
        r.AppendLine();
    }
    r.AppendLine($"<!-- {speedMarker}:end -->");
    r.AppendLine();
}

// Sections between markers (search, speed) can be refreshed alone, leaving the rest of the file as it is.
var markedSections = new Dictionary<string, StringBuilder> { ["memory"] = memoryReport, ["search"] = searchReport, ["mixed"] = mixedReport, ["compile"] = compileReport, ["speed"] = speedReport };
// Where a section goes when the file does not have it yet: after the one it follows in a full report.
var follows = new Dictionary<string, string> { ["compile"] = "mixed" };
string MarkerOf(string section) => section == "speed" ? speedMarker : section;
if (write && only.IsSubsetOf(markedSections.Keys) && File.Exists(outPath))
{
    string existing = File.ReadAllText(outPath);
    foreach (var section in only)
    {
        string begin = $"<!-- {MarkerOf(section)}:begin -->", end = $"<!-- {MarkerOf(section)}:end -->";
        int from = existing.IndexOf(begin, StringComparison.Ordinal), to = existing.IndexOf(end, StringComparison.Ordinal);
        string after = follows.TryGetValue(section, out var previous) ? $"<!-- {MarkerOf(previous)}:end -->" : "";
        int anchorAt = after.Length > 0 ? existing.IndexOf(after, StringComparison.Ordinal) : -1;
        existing = from >= 0 && to > from
            ? existing[..from] + markedSections[section].ToString().TrimEnd() + existing[(to + end.Length)..]
            : anchorAt >= 0
                ? existing[..(anchorAt + after.Length)] + "\n\n" + markedSections[section].ToString().TrimEnd() + existing[(anchorAt + after.Length)..]
                : existing.TrimEnd() + "\n\n" + markedSections[section];
    }
    AtomicFile.Write(outPath, s => s.Write(Encoding.UTF8.GetBytes(existing)));
    Console.WriteLine($"wrote the {string.Join(", ", only)} section(s) of {outPath}");
    return;
}
report.Append(searchReport);
report.Append(mixedReport);
report.Append(compileReport);
report.Append(speedReport);
// Speed sections of other kinds of CPU, measured on those machines, stay.
if (File.Exists(outPath))
    foreach (Match m in Regex.Matches(File.ReadAllText(outPath), @"<!-- (speed-[a-z0-9]+):begin -->.*?<!-- \1:end -->", RegexOptions.Singleline))
        if (m.Groups[1].Value != speedMarker) report.AppendLine(m.Value).AppendLine();

if (write)
{
    AtomicFile.Write(outPath, s => s.Write(Encoding.UTF8.GetBytes(report.ToString())));
    Console.WriteLine($"wrote {outPath}");
}
else Console.WriteLine(report);

void AppendGemmTable(StringBuilder r, double allCores, int rounds)
{
    r.AppendLine("### Per-GEMM throughput (com.onnxvitq.QuantizedLinear, per-token activations quantized in the op)");
    r.AppendLine();
    r.AppendLine("GOPS = 2·M·K·N / median op time: the op's whole work (per-token quantization, integer GEMM, dequantize + bias), as ONNX Runtime's profiler times the node's");
    r.AppendLine("Compute in the same interleaved runs (µs resolution). \"Run\" = the median of the whole `Run` call of the single-op model, which adds what a Run costs around its");
    r.AppendLine("ops (feeding the input, allocating and handing back the output, dispatch): in a whole model every op shares that once. FP32 = ONNX Runtime MatMul + Add of the");
    r.AppendLine("same shape (fused by ORT_ENABLE_ALL), timed the same way; \"int8 vs FP32\" compares op times.");
    r.AppendLine();
    r.AppendLine("| M×K×N | int8 op ms | int8 GOPS | % of peak | int8 Run ms | int4 op ms | int4 GOPS | FP32 op ms | FP32 Run ms | int8 vs FP32 |");
    r.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    foreach (var (m, k, n) in new[] { (197, 192, 768), (197, 192, 576), (197, 192, 192), (197, 768, 192), (1576, 192, 768), (1576, 768, 192) })
    {
        var x = Speed.RandomInput((long)m * k, 1);
        var t = Speed.MedianRunAndOpMs([Speed.GemmModel(m, k, n, 8), Speed.GemmModel(m, k, n, 4), Speed.FloatGemmModel(m, k, n)], "x", x, [m, k], rounds * 5);
        double ops = 2.0 * m * k * n / 1e9;
        string peak = allCores > 0 ? $"{100 * ops / (t[0].OpMs / 1e3) / allCores:0} %" : "—";
        r.AppendLine($"| {m}×{k}×{n} | {t[0].OpMs:0.000} | {ops / (t[0].OpMs / 1e3):0} | {peak} | {t[0].RunMs:0.000} | {t[1].OpMs:0.000} | {ops / (t[1].OpMs / 1e3):0} | {t[2].OpMs:0.000} | {t[2].RunMs:0.000} | {t[2].OpMs / t[0].OpMs:0.00}× |");
        Console.WriteLine($"gemm {m}x{k}x{n}: op (Run) int8 {t[0].OpMs:0.000} ({t[0].RunMs:0.000}) ms, int4 {t[1].OpMs:0.000} ({t[1].RunMs:0.000}) ms, fp32 {t[2].OpMs:0.000} ({t[2].RunMs:0.000}) ms");
    }
    r.AppendLine();
}

static string Pct(double v) => $"{100 * v:0.00} %";

static string FindRoot()
{
    for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "OnnxViTQ.sln"))) return dir.FullName;
    throw new OnnxViTQException("run from inside the OnnxViTQ repository");
}

/// <summary>One quantize + evaluate. <see cref="Correct"/>: per evaluation image, whether the
/// quantized model's class is the label; <see cref="Agrees"/>: whether it is FP32's class.</summary>
internal sealed record Outcome(double Top1, double Drop, double Agreement, double Seconds, QuantizationResult Result, bool[] Correct, bool[] Agrees)
{
    /// <summary>Mean of a − b over the same images, in points, and its standard error (paired:
    /// the images both models get right or wrong do not add noise).</summary>
    public static (double Difference, double StandardError) Paired(bool[] a, bool[] b)
    {
        int n = a.Length;
        double mean = 0, squares = 0;
        for (int i = 0; i < n; i++)
        {
            int d = (a[i] ? 1 : 0) - (b[i] ? 1 : 0);
            mean += d;
            squares += d * d;
        }
        mean /= n;
        double variance = n > 1 ? (squares / n - mean * mean) * n / (n - 1) : 0;
        return (100 * mean, 100 * Math.Sqrt(variance / n));
    }
}
