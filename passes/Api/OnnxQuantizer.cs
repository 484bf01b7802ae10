using OnnxViTQ.Quantization;
using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;

namespace OnnxViTQ;

/// <summary>
/// The library's entry point: quantizes an FP32 ONNX vision transformer file with calibration
/// data and writes the quantized model, the same work as <c>onnxvitq quantize</c>.
/// </summary>
/// <example>
/// <code>
/// var summary = OnnxQuantizer.QuantizeFile("vit.onnx", "calib/", "vit.w8a8.onnx",
///     new QuantizationOptions { Recipe = "repq", Bits = BitWidths.Parse("W8A8") });
/// </code>
/// </example>
public static class OnnxQuantizer
{
    /// <summary>Names of the built-in recipes (<see cref="QuantizationOptions.Recipe"/> also takes a recipe file).</summary>
    public static IReadOnlyList<string> Recipes => OnnxViTQ.Recipes.Names;

    /// <summary>
    /// Quantizes <paramref name="modelPath"/> and writes <paramref name="outputPath"/> atomically
    /// (a temporary file renamed into place: a failure leaves no partial output and an existing
    /// file untouched).
    /// </summary>
    /// <param name="modelPath">FP32 ONNX model with one image input [N,C,H,W].</param>
    /// <param name="calibrationPath">A float32 NCHW .npy, a uint8 image .npy [N,H,W(,C)], a folder of .npy files, or a folder of PNG/JPEG images.</param>
    /// <param name="outputPath">Where the quantized model goes; must differ from <paramref name="modelPath"/>.</param>
    /// <param name="options">Recipe, bit widths, sample count and output format (defaults: minmax, W8A8, 512 samples, portable).</param>
    /// <param name="settings">Image preprocessing overrides, external-data mode and an optional JSON report.</param>
    /// <param name="progress">Receives calibration progress.</param>
    /// <param name="cancel">Stops the run between batches.</param>
    /// <exception cref="OnnxViTQException">Bad input: a missing or malformed file, data that does not fit the model, bad options. The message names the file, node or tensor.</exception>
    public static QuantizationSummary QuantizeFile(string modelPath, string calibrationPath, string outputPath,
        QuantizationOptions? options = null, QuantizeFileSettings? settings = null,
        IProgress<ProgressReport>? progress = null, CancellationToken cancel = default)
    {
        options ??= new QuantizationOptions();
        settings ??= new QuantizeFileSettings();
        ExecutionDevice.Parse(options.Device).EnsureAvailable();
        ExistingFile(modelPath, "model file");
        if (SameFile(modelPath, outputPath))
            throw new OnnxViTQException($"output '{outputPath}' is the input model; choose another output so the original is not overwritten");
        if (Directory.Exists(outputPath)) throw new OnnxViTQException($"output '{outputPath}' is a directory; give a file name");
        if (settings.ReportPath is { } reportPath && (SameFile(reportPath, outputPath) || SameFile(reportPath, modelPath)))
            throw new OnnxViTQException($"report '{reportPath}' would overwrite the model; choose another file");
        if (options.CalibrationSamples <= 0) throw new OnnxViTQException($"calibration samples must be positive, got {options.CalibrationSamples}");
        if (options.BatchSize <= 0) throw new OnnxViTQException($"batch size must be positive, got {options.BatchSize}");

        var model = OnnxModelReader.Load(modelPath);
        var declaredShape = InputShape.Fix(model, modelPath, settings.InputShape, calibrationPath);
        var input = ImageInput.Of(model, modelPath);
        var preprocessing = (settings.ImageData ?? new ImageDataOptions()).Resolve(model, input);
        if (settings.EmbedPreprocessing && OrtExtensionsLibrary.Unavailable is { } noExtensions)
            throw new OnnxViTQException($"--embed-preprocessing: {noExtensions}");
        var source = CalibrationSources.Open(calibrationPath, preprocessing);
        input.EnsureFits(source);
        int quantizable = model.Graph.Nodes.Count(n => n.OpType is "MatMul" or "Gemm" or "Conv");

        if (settings.ReportPath is not null || settings.MeasureLayerOutputs) options = options with { MeasureLayerOutputs = true };
        if ((settings.MaxDropData is null) != (settings.MaxDropLabels is null))
            throw new OnnxViTQException("the data and labels --max-drop is measured on go together; give both or neither");
        if (options.MaxDrop is not null && settings.MaxDropData is { } dropData)
        {
            var images = CalibrationSources.Open(dropData, preprocessing);
            input.EnsureFits(images);
            var dropLabels = NpyFile.Open(ExistingFile(settings.MaxDropLabels!, "labels file")).ReadAllInt64();
            if (dropLabels.Length < images.Count)
                throw new OnnxViTQException($"labels '{settings.MaxDropLabels}' has {dropLabels.Length} entries but data '{dropData}' has {images.Count} samples");
            options = options with { FallbackData = new AccuracyFallback.LabelledData(images, dropLabels.Take(images.Count).ToArray()) };
        }
        // The file is a quantized model only if the recipe emits one.
        var result = Quantizer.Quantize(model, modelPath, source, options, progress, cancel, goals: [Stages.PortableEmitted]);
        declaredShape();

        string? dir = Path.GetDirectoryName(Path.GetFullPath(outputPath));
        if (dir is not null) Directory.CreateDirectory(dir);
        // The calibration data's own preprocessing, in the model: it then takes encoded images.
        if (settings.EmbedPreprocessing) EmbeddedPreprocessing.Embed(model, input, preprocessing, modelPath);
        OnnxModelWriter.Save(model, outputPath, new OnnxWriteOptions { ExternalData = settings.ExternalData });
        if (settings.ReportPath is { } report)
        {
            var document = QuantizationReport.Build(modelPath, options, result);
            AtomicFile.Write(report, s => QuantizationReport.Write(s, document));
        }
        return new QuantizationSummary(modelPath, outputPath, result.Recipe.Name, options.Bits.ToString(), options.Format,
            result.QuantizedNodeCount, result.CalibrationSamples,
            result.Timings.Select(t => new PassTime(t.Pass, t.Elapsed)).ToList(),
            result.Diagnostics.Where(d => d.Level == DiagnosticLevel.Warning).Select(d => d.Message).ToList())
        { Result = result, Options = options, QuantizableNodes = quantizable };
    }

    /// <summary>Top-1 accuracy of a classifier file on images and int64 labels (.npy), run by ONNX Runtime
    /// with the model's QuantizeLinear/DequantizeLinear executed as written: the file's meaning, the
    /// same on every CPU (ONNX Runtime's fused u8×s8 kernels saturate on x86 CPUs without VNNI).</summary>
    /// <param name="modelPath">An FP32 or quantized model (a native-format model needs libonnxvitq_ops.so beside the application).</param>
    /// <param name="dataPath">Evaluation images, in any form <see cref="QuantizeFile"/> accepts for calibration.</param>
    /// <param name="labelsPath">An int64 (or int32) .npy with one label per sample.</param>
    /// <param name="imageData">Preprocessing overrides for 8-bit images.</param>
    /// <param name="limit">Evaluate at most this many samples.</param>
    /// <param name="device">Where ONNX Runtime runs it: <c>cpu</c> (default), <c>cuda</c> or <c>cuda:N</c> (see <see cref="QuantizationOptions.Device"/>).</param>
    /// <exception cref="OnnxViTQException">A missing or malformed file, fewer labels than samples, or a device this build or machine cannot use.</exception>
    /// <param name="inputShape">Sizes for the image input's dynamic dimensions (see <see cref="QuantizeFileSettings.InputShape"/>).</param>
    public static AccuracyResult EvaluateAccuracy(string modelPath, string dataPath, string labelsPath, ImageDataOptions? imageData = null, int? limit = null,
        string device = "cpu", InputShape? inputShape = null)
    {
        var executionDevice = ExecutionDevice.Parse(device);
        executionDevice.EnsureAvailable();
        using var _ = ExecutionDevice.Use(executionDevice);
        ExistingFile(modelPath, "model file");
        var model = OnnxModelReader.Load(modelPath);
        InputShape.Fix(model, modelPath, inputShape, dataPath);
        var input = ImageInput.Of(model, modelPath);
        var source = CalibrationSources.Open(dataPath, (imageData ?? new ImageDataOptions()).Resolve(model, input));
        var labels = NpyFile.Open(ExistingFile(labelsPath, "labels file")).ReadAllInt64();
        int n = Math.Min(limit ?? int.MaxValue, source.Count);
        if (labels.Length < n)
            throw new OnnxViTQException($"labels '{labelsPath}' has {labels.Length} entries but data '{dataPath}' has {source.Count} samples");
        var predictions = ClassificationEvaluator.PredictFile(modelPath, input, source.Take(n));
        return new AccuracyResult(ClassificationEvaluator.Score(predictions, labels.Take(n).ToArray()).Top1, n);
    }

    /// <summary>
    /// Writes <paramref name="modelPath"/> (FP32 or quantized) as a model whose input is one encoded
    /// image — PNG or JPEG bytes, a uint8 1-D tensor — decoded by ONNX Runtime Extensions'
    /// DecodeImage, then resized, center-cropped and normalized in standard ONNX ops with the
    /// preprocessing calibration uses (the model's metadata, or <paramref name="imageData"/>).
    /// Sessions that run it register the Extensions library (<c>SessionOptions.RegisterOrtExtensions()</c>).
    /// </summary>
    /// <param name="modelPath">A model with one float image input [N,C,H,W] (dynamic or unit batch).</param>
    /// <param name="outputPath">Where the image-bytes model goes (written atomically); must differ from <paramref name="modelPath"/>.</param>
    /// <param name="imageData">Mean, std and crop overrides.</param>
    /// <exception cref="OnnxViTQException">A missing or unsuitable model, or the Extensions library missing.</exception>
    public static void EmbedPreprocessing(string modelPath, string outputPath, ImageDataOptions? imageData = null)
    {
        ExistingFile(modelPath, "model file");
        if (SameFile(modelPath, outputPath))
            throw new OnnxViTQException($"output '{outputPath}' is the input model; choose another output so the original is not overwritten");
        if (OrtExtensionsLibrary.Unavailable is { } why) throw new OnnxViTQException(why);
        var model = OnnxModelReader.Load(modelPath);
        var input = ImageInput.Of(model, modelPath);
        EmbeddedPreprocessing.Embed(model, input, (imageData ?? new ImageDataOptions()).Resolve(model, input), modelPath);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(outputPath));
        if (dir is not null) Directory.CreateDirectory(dir);
        OnnxModelWriter.Save(model, outputPath, new OnnxWriteOptions());
    }

    internal static string ExistingFile(string path, string what)
    {
        if (Directory.Exists(path)) throw new OnnxViTQException($"{what} '{path}' is a directory, not a file");
        if (!File.Exists(path)) throw new OnnxViTQException($"{what} '{path}' does not exist");
        return path;
    }

    /// <summary>True when both paths name the same file (after resolving symbolic links).</summary>
    internal static bool SameFile(string a, string b) => string.Equals(ResolveLinks(a), ResolveLinks(b), StringComparison.Ordinal);

    private static string ResolveLinks(string path)
    {
        string full = Path.GetFullPath(path);
        try
        {
            if (File.Exists(full) && File.ResolveLinkTarget(full, returnFinalTarget: true) is { } target) return target.FullName;
        }
        catch (IOException) { }
        return full;
    }
}

/// <summary>File-level settings of <see cref="OnnxQuantizer.QuantizeFile"/>.</summary>
public sealed record QuantizeFileSettings
{
    /// <summary>Preprocessing overrides for 8-bit image data.</summary>
    public ImageDataOptions? ImageData { get; init; }

    /// <summary>Whether weights go to a separate <c>&lt;output&gt;.data</c> file (default: only past 2 GiB).</summary>
    public ExternalDataMode ExternalData { get; init; } = ExternalDataMode.Auto;

    /// <summary>When set, a JSON report (every quantized tensor with its quantizer, parameters and measured error, pass timings) is written here.</summary>
    public string? ReportPath { get; init; }

    /// <summary>Write a model that takes one encoded image (PNG/JPEG bytes) instead of a float tensor:
    /// the calibration data's preprocessing runs inside it (see <see cref="OnnxQuantizer.EmbedPreprocessing"/>).</summary>
    public bool EmbedPreprocessing { get; init; }

    /// <summary>Labelled images and their int64 labels (.npy) that <see cref="QuantizationOptions.MaxDrop"/> is measured on
    /// (without them, top-1 disagreement with FP32 on held-out calibration samples).</summary>
    public string? MaxDropData { get; init; }

    /// <inheritdoc cref="MaxDropData"/>
    public string? MaxDropLabels { get; init; }

    /// <summary>Sizes for the image input's dynamic channel, height or width (e.g. <c>InputShape.Parse("x:1x3x48x320")</c>);
    /// without it, float32 [N,C,H,W] calibration data gives them. The written model keeps its dynamic dimensions.</summary>
    public InputShape? InputShape { get; init; }

    /// <summary>Measure each linear layer's output error even without a JSON report (the tool's HTML report needs it).</summary>
    internal bool MeasureLayerOutputs { get; init; }
}
