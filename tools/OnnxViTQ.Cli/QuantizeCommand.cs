using System.CommandLine;
using System.Diagnostics;
using OnnxViTQ.Data;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Cli.Report;
using Spectre.Console;

namespace OnnxViTQ.Cli;

internal static class QuantizeCommand
{
    public static Command Create(CliIO io)
    {
        var model = new Argument<string?>("model")
        {
            Description = "FP32 ONNX model. Omit it to quantize the bundled default reference model (models/vit.opset17.onnx) " +
                          "with its calibration data and print FP32 vs quantized accuracy on the bundled evaluation set.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var output = new Option<string?>("--output", "-o") { Description = "Where to write the quantized model (required with a model; written atomically)" };
        var calib = new Option<string?>("--calib") { Description = "Calibration data: a float32 NCHW .npy, a uint8 image .npy [N,H,W(,C)], a folder of .npy files, or a folder of PNG/JPEG images" };
        var recipe = new Option<string>("--recipe")
        {
            Description = $"Quantization recipe: {string.Join(", ", Recipes.Names)}; auto (each built-in recipe, cheapest first within --auto-seconds, " +
                          $"scored against FP32 without labels on the calibration samples after the first --calibration-samples, up to {AutoRecipe.HeldOutSamples}: " +
                          "the least mean KL of the outputs wins, then top-1 agreement; give it more unlabelled images than you calibrate on); or a recipe file (.json; see README) " +
                          "with a pass list and the quantizer per tensor role",
            DefaultValueFactory = _ => "minmax",
        };
        var bits = new Option<string>("--bits")
        {
            Description = "Weight/activation bit widths: W8A8, W6A6, W4A4 (any W2..8A2..8), or mixed:<min>-<max> with --avg-bits: one width per " +
                          "attention/MLP module chosen by sensitivity (the patch embedding, head and image stay at 8 bits)",
            DefaultValueFactory = _ => "W8A8",
        };
        var avgBits = new Option<double?>("--avg-bits") { Description = "With --bits mixed:<min>-<max>: the average width over the modules' weights, e.g. 6" };
        var percentile = new Option<double?>("--percentile") { Description = "Percentile per side for quantizers with range=percentile (the percentile recipe: default 99.99)" };
        var samples = new Option<int>("--samples") { Description = "Calibration samples to use at most", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch-size") { Description = "Calibration batch size (memory grows with it, not with --samples)", DefaultValueFactory = _ => 32 };
        var report = new Option<string?>("--report") { Description = "Also write a JSON report: every quantized tensor with its role, module, quantizer, bits, parameters, measured error (SQNR, cosine) and consumers, plus pass timings" };
        var html = new Option<string?>("--html") { Description = "Also write a self-contained HTML report (opens offline): per-layer error table, histograms of the worst activations with their ranges, post-LayerNorm channel ranges, pass timings, and accuracy with --eval-data" };
        var evalData = new Option<string?>("--eval-data") { Description = "Labelled evaluation images (any --calib form): FP32 vs quantized top-1 is printed and put in the HTML report; needs --eval-labels" };
        var evalLabels = new Option<string?>("--eval-labels") { Description = "int64 .npy of labels for --eval-data" };
        var external = new Option<ExternalDataMode>("--external-data") { Description = "Store weights in '<output>.data': Auto (only past 2 GiB), Always, Never", DefaultValueFactory = _ => ExternalDataMode.Auto };
        var format = new Option<string>("--format")
        {
            Description = "Output form: portable (standard ONNX QDQ, any runtime), native (linear layers as com.onnxvitq ops from runtime-ops: " +
                          "integer VNNI GEMM, packed int8/int4 weights; needs libonnxvitq_ops.so registered), ort (linear layers in the form a stock " +
                          "ONNX Runtime runs fastest here, measured per layer: QDQ or com.microsoft.MatMulIntegerToFloat)",
            DefaultValueFactory = _ => "portable",
        };
        var embed = new Option<bool>("--embed-preprocessing")
        {
            Description = "Write a model whose input is one encoded image (PNG/JPEG bytes, uint8 1-D): ONNX Runtime Extensions' DecodeImage, then the " +
                          "calibration data's resize, center crop and normalization in standard ONNX ops (sessions must register the Extensions library); " +
                          "--eval-data must then be a folder of images",
        };
        var autoSeconds = new Option<double>("--auto-seconds") { Description = "With --recipe auto: no further recipe is tried after this many seconds", DefaultValueFactory = _ => 900 };
        var autoRecipes = new Option<string?>("--auto-recipes") { Description = $"With --recipe auto: the recipes to try, comma-separated (default: {string.Join(",", AutoRecipe.Candidates)})" };
        var maxDrop = new Option<double?>("--max-drop")
        {
            Description = "Most top-1 the quantized model may lose, in points: modules go back to 8 bits, then to float, most sensitive first, until it holds " +
                          "(measured against FP32 on --eval-data/--eval-labels when given, else as top-1 disagreement on 128 held-out calibration samples)",
        };
        var exclude = ExcludeOption.Create();
        var inputShape = InputShapeOption.Create();
        var pre = new PreprocessingOptions();
        var device = new DeviceOption();

        var cmd = new Command("quantize", "Quantize an FP32 ONNX model with calibration data; writes standard ONNX (QuantizeLinear/DequantizeLinear and plain-op fake-quant) that any ONNX Runtime runs, or with --format native/ort a faster model with integer linear layers")
        {
            model, output, calib, recipe, autoSeconds, autoRecipes, bits, avgBits, format, percentile, samples, batch, maxDrop, exclude, inputShape, external, report, html, evalData, evalLabels, embed, device.Option,
        };
        pre.AddTo(cmd);
        cmd.SetAction(r => CliApp.Guard(io, () =>
        {
            var executionDevice = device.Read(r);
            using var onDevice = ExecutionDevice.Use(executionDevice);
            var options = new QuantizationOptions
            {
                Device = executionDevice.ToString(),
                Recipe = r.GetValue(recipe)!,
                Bits = MixedPrecision.IsMixed(r.GetValue(bits)!) ? BitWidths.W8A8 : BitWidths.Parse(r.GetValue(bits)!),
                MixedPrecision = MixedPrecision.IsMixed(r.GetValue(bits)!)
                    ? MixedPrecision.Parse(r.GetValue(bits)!, r.GetValue(avgBits) ?? throw new OnnxViTQException("--bits mixed:<min>-<max> needs --avg-bits (the target average width)"))
                    : r.GetValue(avgBits) is null ? null : throw new OnnxViTQException("--avg-bits goes with --bits mixed:<min>-<max>"),
                Percentile = r.GetValue(percentile),
                CalibrationSamples = Positive(r.GetValue(samples), "--samples"),
                BatchSize = Positive(r.GetValue(batch), "--batch-size"),
                Format = OutputFormats.Parse(r.GetValue(format)!),
                Exclude = r.GetValue(exclude) ?? [],
                MaxDrop = r.GetValue(maxDrop),
                AutoSeconds = r.GetValue(autoSeconds) is var seconds and > 0 ? seconds : throw new OnnxViTQException("--auto-seconds must be positive"),
                AutoRecipes = r.GetValue(autoRecipes)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            };
            var reports = new ReportPaths(r.GetValue(report), r.GetValue(html), r.GetValue(evalData), r.GetValue(evalLabels))
            {
                EmbedPreprocessing = r.GetValue(embed),
                InputShape = r.GetValue(inputShape) is { } shape ? InputShape.Parse(shape) : null,
            };
            if ((reports.EvalData is null) != (reports.EvalLabels is null))
                throw new OnnxViTQException("--eval-data and --eval-labels go together; give both or neither");
            string? modelPath = r.GetValue(model);
            if (modelPath is null)
                return RunDefault(io, options, r.GetValue(output), r.GetValue(calib), r, pre, r.GetValue(external), reports);
            string outPath = r.GetValue(output) ?? throw new OnnxViTQException("--output/-o is required when a model is given");
            string calibPath = r.GetValue(calib) ?? throw new OnnxViTQException("--calib is required when a model is given");
            QuantizeFile(io, modelPath, outPath, calibPath, options, r, pre, r.GetValue(external), reports);
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static int Positive(int v, string name) => v > 0 ? v : throw new OnnxViTQException($"{name} must be positive, got {v}");

    /// <summary>The report files a run writes and the evaluation data its accuracy comes from.</summary>
    internal sealed record ReportPaths(string? Json, string? Html, string? EvalData, string? EvalLabels)
    {
        /// <summary>The output takes encoded images (--embed-preprocessing).</summary>
        public bool EmbedPreprocessing { get; init; }

        /// <summary>--input-shape: sizes of the input's dynamic dimensions (for calibration and evaluation).</summary>
        public InputShape? InputShape { get; init; }

        public static readonly ReportPaths None = new(null, null, null, null);
    }

    internal static void QuantizeFile(CliIO io, string modelPath, string outPath, string calibPath, QuantizationOptions options,
        ParseResult r, PreprocessingOptions pre, ExternalDataMode external, ReportPaths reports)
    {
        foreach (var (path, option) in new[] { (reports.Json, "--report"), (reports.Html, "--html") })
            if (path is not null && (Paths.SameFile(path, outPath) || Paths.SameFile(path, modelPath)))
                throw new OnnxViTQException($"{option} '{path}' would overwrite the model; choose another file");
        if (reports.EvalData is not null) Paths.ExistingFile(reports.EvalLabels!, "--eval-labels file");
        if (reports.EmbedPreprocessing && reports.EvalData is { } images && !Directory.Exists(images))
            throw new OnnxViTQException($"--embed-preprocessing writes a model that takes encoded images: --eval-data must be a folder of PNG/JPEG images, not '{images}'");
        var sw = Stopwatch.StartNew();
        string widths = options.MixedPrecision is { } mixed
            ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"mixed {mixed.MinBits}-{mixed.MaxBits} bits, average {mixed.AverageBits}")
            : options.Bits.ToString();
        io.Out.WriteLine($"Quantizing {modelPath} ({options.Recipe}, {widths}, {options.Format.Name()} format) with up to {options.CalibrationSamples} samples of {calibPath}");
        var imageData = pre.Read(r);
        var settings = new QuantizeFileSettings
        {
            ImageData = imageData, ExternalData = external, ReportPath = reports.Json, MeasureLayerOutputs = reports.Html is not null,
            EmbedPreprocessing = reports.EmbedPreprocessing, InputShape = reports.InputShape,
            MaxDropData = options.MaxDrop is null || reports.EmbedPreprocessing ? null : reports.EvalData,
            MaxDropLabels = options.MaxDrop is null || reports.EmbedPreprocessing ? null : reports.EvalLabels,
        };
        var summary = ConsoleProgress.Run(io, progress => OnnxQuantizer.QuantizeFile(modelPath, calibPath, outPath, options, settings, progress));
        var result = summary.Result;
        AccuracyComparison? accuracy = null;
        if (reports.EvalData is { } evalData)
            accuracy = ConsoleProgress.Run(io, progress => Accuracy.Compare(modelPath, outPath, evalData, reports.EvalLabels!, imageData, progress, reports.InputShape));
        if (reports.Html is { } htmlPath)
            AtomicFile.Write(htmlPath, s =>
            {
                using var writer = new StreamWriter(s, new System.Text.UTF8Encoding(false), leaveOpen: true);
                writer.Write(HtmlReport.Render(summary, accuracy));
            });
        sw.Stop();
        int quantizable = summary.QuantizableNodes;

        foreach (var d in result.Diagnostics.Where(d => d.Level == PassInfra.DiagnosticLevel.Warning)) io.Error.WriteLine($"warning: {d.Message}");
        var nodes = result.QuantizedNodes;
        int linear = nodes.Count(n => result.Plan.Weights.Any(e => e.Uses.Any(u => u.Node == n))) + result.LoweredLayers.Count;
        int total = result.QuantizedNodeCount;
        var table = new Table().Border(TableBorder.Rounded).HideHeaders().AddColumn("").AddColumn("");
        table.AddRow("recipe", Markup.Escape($"{(result.Auto is null ? "" : "auto → ")}{result.Recipe.Name}: {result.Recipe.Description}"));
        if (result.Fallback is { } fallback)
            table.AddRow("max drop", Markup.Escape(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{(fallback.Holds ? "holds" : "NOT reached")}: at most {fallback.MaxDrop:0.##} pt of {fallback.Metric}; ") +
                string.Join("; ", fallback.Steps.Select(st => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{st.Action} → {st.Loss:0.00} pt")))));
        if (result.Auto is { } auto)
            table.AddRow("auto", Markup.Escape($"{auto.CalibrationSamples} samples calibrated, {auto.HeldOutSamples} held out; mean KL to FP32 (top-1 agreement): " +
                string.Join(", ", auto.Scores.Select(sc => sc.MeanKl is { } kl
                    ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{sc.Recipe} {kl:0.####} ({100 * sc.Agreement:0.0#} %, {sc.Seconds:0.0} s)")
                    : $"{sc.Recipe} {sc.Note}")) + (auto.Lead is { } lead ? $"; {auto.Recipe} {lead}" : "")));
        foreach (var d in result.Diagnostics.Where(d => d.Level == PassInfra.DiagnosticLevel.Info && d.Pass == "canonicalize" && d.Message.StartsWith("converted ", StringComparison.Ordinal)))
            table.AddRow("opset", Markup.Escape(d.Message["converted ".Length..]));
        table.AddRow("nodes quantized", $"{total} of {quantizable} MatMul/Gemm/Conv ({linear} with weights, {total - linear} activation × activation)");
        foreach (var line in PlanSummary.Lines(result.Plan)) table.AddRow(Markup.Escape(line.Label), Markup.Escape(line.Text));
        if (PlanSummary.Excluded(result.Plan) is { } excluded) table.AddRow("kept in float", Markup.Escape(excluded));
        foreach (var d in result.Diagnostics.Where(d => d.Level == PassInfra.DiagnosticLevel.Info && (d.Pass.StartsWith("lower-", StringComparison.Ordinal) || d.Pass.StartsWith("fuse-native-", StringComparison.Ordinal))))
            table.AddRow("format " + options.Format.Name(), Markup.Escape(d.Message.Length > 300 ? d.Message[..300] + "…" : d.Message));
        if (options.Format == OutputFormat.Native && NativeOps.Unavailable is { } why)
            io.Error.WriteLine($"warning: the native model needs libonnxvitq_ops.so to run, and {why}");
        if (result.ModuleBits is { } mp)
            table.AddRow("mixed precision", Markup.Escape(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"average {mp.AverageBits:0.##} bits: ") + string.Join(", ", mp.Modules.Select(m => $"{m.Module} {m.Bits}"))));
        table.AddRow("calibration", $"{result.CalibrationSamples} samples");
        if (accuracy is { } a)
        {
            var culture = System.Globalization.CultureInfo.InvariantCulture;
            string fused = a.FusedTop1 is { } f ? string.Create(culture, $"; {100 * f:0.00} % with QDQ fused as ONNX Runtime runs it here ({string.Join("; ", a.FusedReasons ?? [])})") : "";
            table.AddRow("accuracy", Markup.Escape(string.Create(culture,
                $"top-1 FP32 {100 * a.Fp32Top1:0.00} %, quantized {100 * a.QuantizedTop1:0.00} % (drop {100 * (a.Fp32Top1 - a.QuantizedTop1):0.00} pt, agreement {100 * a.Agreement:0.00} %) on {a.Samples} samples") + fused));
        }
        table.AddRow("time", Markup.Escape($"{sw.Elapsed.TotalSeconds:0.0} s (" + string.Join(", ", result.Timings.Where(t => t.Elapsed.TotalSeconds >= 0.05).Select(t => $"{t.Pass} {t.Elapsed.TotalSeconds:0.0} s")) + ")"));
        table.AddRow("peak memory", Paths.Size(System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64));
        if (reports.Json is not null) table.AddRow("report", Markup.Escape(reports.Json));
        if (reports.Html is not null) table.AddRow("html report", Markup.Escape(reports.Html));
        table.AddRow("output", Markup.Escape($"{outPath} ({Paths.Size(new FileInfo(outPath).Length)}, input {Paths.Size(new FileInfo(modelPath).Length)})"));
        io.Console.Write(table);
    }

    /// <summary>The bundled demo: default model, bundled calibration data, then FP32 vs quantized
    /// accuracy on the bundled evaluation subset.</summary>
    private static int RunDefault(CliIO io, QuantizationOptions options, string? outPath, string? calibPath,
        ParseResult r, PreprocessingOptions pre, ExternalDataMode external, ReportPaths reports)
    {
        var bundled = BundledModels.Locate();
        string modelPath = bundled.Model(BundledModels.DefaultModel);
        outPath ??= Path.Combine("artifacts", $"{Path.GetFileNameWithoutExtension(modelPath)}.{options.Recipe}-{options.Bits}.onnx");
        QuantizeFile(io, modelPath, outPath, calibPath ?? bundled.Calibration, options, r, pre, external, reports);
        io.Out.WriteLine();
        // An image-bytes model is fed image files: the bundled PNGs (the first 16 evaluation images).
        EvalCommand.Evaluate(io, outPath, reports.EmbedPreprocessing ? bundled.PngFolder : bundled.EvalImages, bundled.EvalLabels, modelPath, 64, null, r, pre);
        return ExitCodes.Ok;
    }
}
