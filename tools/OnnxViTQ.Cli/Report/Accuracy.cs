using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;

namespace OnnxViTQ.Cli.Report;

/// <summary>FP32 and quantized model run side by side on the same labelled data.</summary>
internal static class Accuracy
{
    public static AccuracyComparison Compare(string fp32Path, string quantizedPath, string dataPath, string labelsPath,
        ImageDataOptions imageData, IProgress<ProgressReport>? progress = null, InputShape? inputShape = null)
    {
        var model = OnnxModelReader.Load(fp32Path);
        InputShape.Fix(model, fp32Path, inputShape, dataPath);
        var input = ImageInput.Of(model, fp32Path);
        var source = CalibrationSources.Open(dataPath, imageData.Resolve(model, input));
        var labels = NpyFile.Open(Paths.ExistingFile(labelsPath, "--eval-labels file")).ReadAllInt64();
        if (labels.Length < source.Count)
            throw new OnnxViTQException($"labels '{labelsPath}' has {labels.Length} entries but data '{dataPath}' has {source.Count} samples");
        var truth = labels.Take(source.Count).ToArray();
        var fp32 = ClassificationEvaluator.PredictFile(fp32Path, input, source, progress: progress);
        var quantizedModel = OnnxModelReader.Load(quantizedPath);
        // An image-bytes model (--embed-preprocessing) is fed the image files themselves.
        bool encoded = EmbeddedPreprocessing.TakesImageBytes(quantizedModel);
        var quantized = encoded
            ? ClassificationEvaluator.PredictEncodedFiles(quantizedPath, EmbeddedPreprocessing.ImageFiles(dataPath, quantizedPath), progress)
            : ClassificationEvaluator.PredictFile(quantizedPath, input, source, progress: progress);
        var reasons = encoded ? [] : OrtInt8Kernels.FusedExecutionDiffers(quantizedModel);
        int[]? fused = reasons.Count > 0
            ? ClassificationEvaluator.PredictFile(quantizedPath, input, source, progress: progress, qdq: QdqExecution.Fused)
            : null;
        return new AccuracyComparison(dataPath, source.Count, ClassificationEvaluator.Score(fp32, truth).Top1,
            ClassificationEvaluator.Score(quantized, truth).Top1, ClassificationEvaluator.Agreement(quantized, fp32),
            fused is null ? null : ClassificationEvaluator.Score(fused, truth).Top1, fused is null ? null : ClassificationEvaluator.Agreement(fused, fp32), reasons);
    }
}
