using System.Diagnostics;
using System.Globalization;
using System.Text;
using OnnxViTQ;
using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Ir;
using OnnxViTQ.Serialization;

/// <summary>
/// What every benchmark section shares: the command line, the committed models and data, the
/// evaluation set, the FP32 results (computed once per model) and the one quantize-and-evaluate
/// step the accuracy sections are made of.
/// </summary>
internal sealed class Bench
{
    private readonly List<string> _args;
    private readonly Dictionary<string, (int[] Predictions, double Top1)> _evaluated = [];

    public Bench(string[] args)
    {
        _args = [.. args];
        CommandLine = args;
        Root = FindRoot();
        OutPath = Arg("--out", Path.Combine(Root, "BENCHMARKS.md"));
        Extra = Arg("--extra", "") is { Length: > 0 } e ? e : null;
        DeitTiny = Arg("--deit-tiny", "") is { Length: > 0 } d ? d : null;
        DeitTinyCalib = Arg("--deit-tiny-calib", "") is { Length: > 0 } dc ? dc : null;
        Only = List("--only")?.ToHashSet() ?? ["accuracy", "ablation", "softmax", "time", "extra", "memory", "search", "mixed", "compile", "speed", "auto", "auto-scores", "exports"];
        ModelFilter = List("--models");
        RecipeNames = List("--recipes") ?? ["minmax", "percentile", "ptq4vit", "repq", "dopq", "adfq", "aocq"];
        Bits = List("--bits") ?? ["W8A8", "W6A6", "W4A4"];
        Write = !_args.Contains("--no-write");
        Models = Path.Combine(Root, "models");
        Calib = Path.Combine(Models, "data", "calib_512.npy");
        Unlabelled = Path.Combine(Models, "data", "unlabelled_2048_images_u8.npy");
        // The evaluation set: the committed 2000 test images unless --eval-images/--eval-labels name another
        // (tools/zoo/zoo.py test-split writes the whole 10 000-image test split, for differences the
        // 2000 images cannot resolve).
        CommittedEval = Path.Combine(Models, "data", "eval_2000_images_u8.npy");
        EvalImages = Arg("--eval-images", CommittedEval);
        Labels = NpyFile.Open(Arg("--eval-labels", Path.Combine(Models, "data", "eval_2000_labels.npy"))).ReadAllInt64();
        if (NpyFile.Open(EvalImages).Shape[0] != Labels.Length)
            throw new OnnxViTQException($"--eval-images '{EvalImages}' and --eval-labels hold different numbers of images");
        EvalSet = EvalImages == CommittedEval ? "the 2000 evaluation images" : $"the {Labels.Length} images of {Path.GetFileName(EvalImages)}";
        string[] families = ["vit", "vit-outliers", "deit", "deit-outliers", "swin", "swin-outliers"];
        Committed = families.SelectMany(f => new[] { $"{f}.opset17.onnx", $"{f}.opset13.onnx" })
            .Where(f => ModelFilter is null || ModelFilter.Any(m => f.StartsWith(m + ".", StringComparison.Ordinal))).ToList();
        Runtime = $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}, " +
                  $"ONNX Runtime {typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetName().Version}";
    }

    public IReadOnlyList<string> CommandLine { get; }
    public string Root { get; }
    public string OutPath { get; }
    public string? Extra { get; }
    public string? DeitTiny { get; }
    public string? DeitTinyCalib { get; }
    public HashSet<string> Only { get; }
    public string[]? ModelFilter { get; }
    public string[] RecipeNames { get; }
    public string[] Bits { get; }
    public bool Write { get; }
    public string Models { get; }
    public string Calib { get; }
    /// <summary>2048 test-split images outside the evaluation ones, no labels (zoo.py unlabelled): auto's held-out pool.</summary>
    public string Unlabelled { get; }
    public string CommittedEval { get; }
    public string EvalImages { get; }
    public long[] Labels { get; }
    public string EvalSet { get; }
    public List<string> Committed { get; }
    public string Runtime { get; }

    /// <summary>The section being written (Program gives each section its own, then puts it between its markers).</summary>
    public StringBuilder Report { get; set; } = new();

    /// <summary>Every quantize + evaluate of this run (verdict lines and the time section read them).</summary>
    public List<(string Model, string Recipe, string Bits, Outcome O)> Outcomes { get; } = [];

    public string Arg(string name, string fallback) { int i = _args.IndexOf(name); return i >= 0 && i + 1 < _args.Count ? _args[i + 1] : fallback; }
    public string[]? List(string name) => Arg(name, "") is { Length: > 0 } v ? v.Split(',') : null;
    public bool ListedExplicitly(string name) => List(name) is not null;
    public string ModelPath(string file) => Path.Combine(Models, file);

    public (int[] Predictions, double Top1) Fp32(string path)
    {
        if (_evaluated.TryGetValue(path, out var r)) return r;
        var m = OnnxModelReader.Load(path);
        var p = ClassificationEvaluator.Predict(m, path, EvalSource(m));
        return _evaluated[path] = (p, ClassificationEvaluator.Score(p, Labels).Top1);
    }

    public NpyTensorSource EvalSource(Model m) => new(EvalImages, ImagePreprocessing.ForModel(m, 3, 28, 28));

    /// <summary>What a user with unlabelled images gives <c>--recipe auto</c>: the 512 calibration samples, then the 2048 unlabelled images.</summary>
    public ICalibrationSource AutoPool(Model m) => new NpyTensorSource(Calib, null).Concat(new NpyTensorSource(Unlabelled, ImagePreprocessing.ForModel(m, 3, 28, 28)));

    /// <summary>One quantize + evaluate; <paramref name="load"/> gives a fresh FP32 model.</summary>
    public Outcome Measure(string name, Func<Model> load, Recipe recipe, string bits, (int[] Predictions, double Top1) fp32, int samples = 512, bool layerErrors = false,
        MixedPrecision? mixed = null) =>
        Measure(name, load, $"{recipe.Name} {(mixed is null ? bits : $"mixed {mixed.MinBits}-{mixed.MaxBits} avg {mixed.AverageBits}")}", fp32, model =>
            Quantizer.Quantize(model, name, new NpyTensorSource(Calib, null),
                new QuantizationOptions { Bits = BitWidths.Parse(bits), CalibrationSamples = samples, MeasureLayerOutputs = layerErrors, MixedPrecision = mixed }, recipe));

    /// <summary>One quantize (by <paramref name="quantize"/>, on a fresh model) + evaluate.</summary>
    public Outcome Measure(string name, Func<Model> load, string label, (int[] Predictions, double Top1) fp32, Func<Model, QuantizationResult> quantize)
    {
        var model = load();
        var sw = Stopwatch.StartNew();
        var result = quantize(model);
        sw.Stop();
        var saved = OnnxModelReader.Parse(OnnxModelWriter.ToBytes(model));
        var q = ClassificationEvaluator.Predict(saved, name, EvalSource(saved));
        double top1 = ClassificationEvaluator.Score(q, Labels).Top1;
        // Without the calibration statistics (row samples, histograms): a full run keeps every outcome
        // and holding them all took more memory than the machine has.
        var o = new Outcome(top1, 100 * (fp32.Top1 - top1), ClassificationEvaluator.Agreement(fp32.Predictions, q), sw.Elapsed.TotalSeconds, result with { Statistics = null },
            q.Select((p, i) => p == Labels[i]).ToArray(), q.Select((p, i) => p == fp32.Predictions[i]).ToArray());
        Console.WriteLine($"{name} {label}: top-1 {Pct(top1)}, drop {o.Drop:0.00}, agreement {Pct(o.Agreement)}, {o.Seconds:0.0} s");
        return o;
    }

    /// <summary>The "Regenerate this table" line of a section of the whole-file report.</summary>
    public void Regenerate(string section) =>
        Report.AppendLine($"Regenerate this table: `dotnet run --project tools/bench -c Release -- --only {section}{(section == "extra" ? " --extra <folder>" : section.Contains("time") ? " --deit-tiny <model> --deit-tiny-calib <images>" : "")}` " +
                          $"(refreshes this section of BENCHMARKS.md alone; this run: {DateTime.UtcNow:yyyy-MM-dd}, {Runtime}).");

    public static string Pct(double v) => $"{100 * v:0.00} %";

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "OnnxViTQ.sln"))) return dir.FullName;
        throw new OnnxViTQException("run from inside the OnnxViTQ repository");
    }
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
