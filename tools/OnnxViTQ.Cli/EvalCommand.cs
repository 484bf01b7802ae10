using System.CommandLine;
using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using Spectre.Console;

namespace OnnxViTQ.Cli;

internal static class EvalCommand
{
    public static Command Create(CliIO io)
    {
        var model = new Argument<string>("model") { Description = "ONNX image classifier to evaluate (FP32 or quantized)" };
        var data = new Option<string>("--data") { Description = "Evaluation images: uint8 .npy [N,H,W(,C)] (preprocessed like calibration data), float32 NCHW .npy, or a folder", Required = true };
        var labels = new Option<string>("--labels") { Description = "Integer class labels .npy [N], in the order of --data", Required = true };
        var reference = new Option<string?>("--ref") { Description = "Reference (e.g. FP32) model: also prints its accuracy, the drop, and top-1 agreement" };
        var batch = new Option<int>("--batch-size") { Description = "Inference batch size", DefaultValueFactory = _ => 64 };
        var limit = new Option<int?>("--limit") { Description = "Evaluate only the first N samples" };
        var inputShape = InputShapeOption.Create();
        var pre = new PreprocessingOptions();
        var device = new DeviceOption();
        var cmd = new Command("eval", "Top-1 accuracy of a classifier on labelled data, optionally against a reference model") { model, data, labels, reference, batch, limit, inputShape, device.Option };
        pre.AddTo(cmd);
        cmd.SetAction(r => CliApp.Guard(io, () =>
        {
            using var onDevice = ExecutionDevice.Use(device.Read(r));
            Evaluate(io, r.GetValue(model)!, r.GetValue(data)!, r.GetValue(labels)!, r.GetValue(reference), r.GetValue(batch), r.GetValue(limit), r, pre,
                r.GetValue(inputShape) is { } shape ? InputShape.Parse(shape) : null);
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    internal static void Evaluate(CliIO io, string modelPath, string dataPath, string labelsPath, string? refPath, int batchSize, int? limit,
        ParseResult r, PreprocessingOptions pre, InputShape? inputShape = null)
    {
        if (batchSize <= 0) throw new OnnxViTQException($"--batch-size must be positive, got {batchSize}");
        var model = OnnxModelReader.Load(Paths.ExistingFile(modelPath, "model file"));
        var refModel = refPath is null ? null : OnnxModelReader.Load(Paths.ExistingFile(refPath, "reference model"));
        InputShape.Fix(model, modelPath, inputShape, dataPath);
        if (refModel is not null) InputShape.Fix(refModel, refPath!, inputShape, dataPath);
        if (EmbeddedPreprocessing.TakesImageBytes(model))
        {
            EvaluateEncoded(io, modelPath, dataPath, labelsPath, refPath, refModel, limit, r, pre);
            return;
        }
        var input = ImageInput.Of(model, modelPath);
        var source = CalibrationSources.Open(dataPath, pre.Resolve(r, model, input));
        var allLabels = NpyFile.Open(Paths.ExistingFile(labelsPath, "labels file")).ReadAllInt64();
        int n = Math.Min(limit ?? int.MaxValue, source.Count);
        if (allLabels.Length < n)
            throw new OnnxViTQException($"labels '{labelsPath}' has {allLabels.Length} entries but data '{dataPath}' has {source.Count} samples");
        var labels = allLabels.Take(n).ToArray();
        var limited = source.Take(n);

        // Where ONNX Runtime's fused execution can differ from the file's meaning (u8×s8 saturation
        // on this CPU, activations re-quantized by MatMulNBits), both are measured.
        var fusedReasons = OrtInt8Kernels.FusedExecutionDiffers(model);
        bool fusedDiffers = fusedReasons.Count > 0;
        var (pred, fusedPred, refPred) = ConsoleProgress.Run(io, progress =>
        {
            var p = ClassificationEvaluator.PredictFile(modelPath, input, limited, batchSize, progress);
            var fp = fusedDiffers ? ClassificationEvaluator.PredictFile(modelPath, input, limited, batchSize, progress, qdq: QdqExecution.Fused) : null;
            var rp = refModel is null ? null : ClassificationEvaluator.PredictFile(refPath!, ImageInput.Of(refModel, refPath!), limited, batchSize, progress);
            return (p, fp, rp);
        });
        var table = new Table().Border(TableBorder.Rounded).AddColumn("model").AddColumn(new TableColumn("top-1").RightAligned());
        var rows = new List<(string Name, int[] Predictions)> { (modelPath, pred) };
        if (fusedPred is not null) rows.Add(($"{modelPath} (QDQ fused, as ONNX Runtime runs it here)", fusedPred));
        if (refPred is not null)
        {
            var refScore = ClassificationEvaluator.Score(refPred, labels);
            table.AddColumn(new TableColumn("drop (pt)").RightAligned()).AddColumn(new TableColumn("agreement").RightAligned());
            table.AddRow(Markup.Escape(refPath!), Pct(refScore.Top1), "", "");
            foreach (var (name, p) in rows)
            {
                double top1 = ClassificationEvaluator.Score(p, labels).Top1;
                table.AddRow(Markup.Escape(name), Pct(top1), $"{100 * (refScore.Top1 - top1):0.00}", Pct(ClassificationEvaluator.Agreement(p, refPred)));
            }
        }
        else
            foreach (var (name, p) in rows) table.AddRow(Markup.Escape(name), Pct(ClassificationEvaluator.Score(p, labels).Top1));
        io.Out.WriteLine($"Evaluated {n} samples of {dataPath}");
        io.Console.Write(table);
        if (fusedPred is not null)
            io.Out.WriteLine($"note: the first row runs the model's QuantizeLinear/DequantizeLinear as written (the model's meaning, the same on every CPU); " +
                             $"the second as ONNX Runtime fuses them into its integer kernels here, which differs: {string.Join("; ", fusedReasons)}. " +
                             "--format ort emits forms ONNX Runtime runs exactly.");
    }

    /// <summary>An image-bytes model (<c>--embed-preprocessing</c>): fed each image file's bytes; a
    /// reference model with a tensor input is fed the same images preprocessed as usual.</summary>
    private static void EvaluateEncoded(CliIO io, string modelPath, string dataPath, string labelsPath, string? refPath, OnnxViTQ.Ir.Model? refModel, int? limit,
        ParseResult r, PreprocessingOptions pre)
    {
        var files = EmbeddedPreprocessing.ImageFiles(dataPath, modelPath);
        var allLabels = NpyFile.Open(Paths.ExistingFile(labelsPath, "labels file")).ReadAllInt64();
        int n = Math.Min(limit ?? int.MaxValue, files.Count);
        if (allLabels.Length < n)
            throw new OnnxViTQException($"labels '{labelsPath}' has {allLabels.Length} entries but data '{dataPath}' has {files.Count} images");
        var labels = allLabels.Take(n).ToArray();
        var (pred, refPred) = ConsoleProgress.Run(io, progress =>
        {
            var p = ClassificationEvaluator.PredictEncodedFiles(modelPath, files.Take(n).ToList(), progress);
            int[]? rp = null;
            if (refModel is not null)
            {
                var input = ImageInput.Of(refModel, refPath!);
                rp = ClassificationEvaluator.PredictFile(refPath!, input, CalibrationSources.Open(dataPath, pre.Resolve(r, refModel, input)).Take(n), progress: progress);
            }
            return (p, rp);
        });
        var table = new Table().Border(TableBorder.Rounded).AddColumn("model").AddColumn(new TableColumn("top-1").RightAligned());
        double top1 = ClassificationEvaluator.Score(pred, labels).Top1;
        if (refPred is not null)
        {
            double refTop1 = ClassificationEvaluator.Score(refPred, labels).Top1;
            table.AddColumn(new TableColumn("drop (pt)").RightAligned()).AddColumn(new TableColumn("agreement").RightAligned());
            table.AddRow(Markup.Escape(refPath!), Pct(refTop1), "", "");
            table.AddRow(Markup.Escape($"{modelPath} (encoded images)"), Pct(top1), $"{100 * (refTop1 - top1):0.00}", Pct(ClassificationEvaluator.Agreement(pred, refPred)));
        }
        else table.AddRow(Markup.Escape($"{modelPath} (encoded images)"), Pct(top1));
        io.Out.WriteLine($"Evaluated {n} images of {dataPath}");
        io.Console.Write(table);
    }

    private static string Pct(double v) => $"{100 * v:0.00} %";
}
