using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Evaluation;

/// <summary>Top-1 accuracy of a model's predictions, and agreement with a reference model's.</summary>
public sealed record ClassificationResult(int Samples, int Correct)
{
    public double Top1 => Samples == 0 ? 0 : (double)Correct / Samples;
}

/// <summary>Runs an image classifier through ONNX Runtime and returns its top-1 predictions
/// (argmax of the first output).</summary>
public static class ClassificationEvaluator
{
    public static int[] Predict(Model model, string modelName, ICalibrationSource data, int batchSize = 64,
        IProgress<ProgressReport>? progress = null, CancellationToken cancel = default)
    {
        var input = ImageInput.Of(model, modelName);
        input.EnsureFits(data);
        batchSize = input.BatchSizeFor(batchSize);
        using var session = OrtRuntime.CreateSession(model, modelName);
        string output = session.OutputNames[0];
        var predictions = new List<int>(data.Count);
        using var runOptions = new RunOptions();
        progress?.Report(new ProgressReport($"evaluating {Path.GetFileName(modelName)}", 0, data.Count, "images"));
        foreach (var read in data.ReadBatches(batchSize))
        {
            cancel.ThrowIfCancellationRequested();
            var batch = input.FixedBatch is { } fixedBatch ? read.PadTo(fixedBatch) : read;
            using var x = OrtValue.CreateTensorValueFromMemory(batch.Data, [batch.Count, input.Channels, input.Height, input.Width]);
            IDisposableReadOnlyCollection<OrtValue> results;
            try
            {
                results = session.Run(runOptions, [input.Name], [x], [output]);
            }
            catch (OnnxRuntimeException e)
            {
                throw new OnnxViTQException($"ONNX Runtime failed running '{modelName}': {OrtRuntime.FirstLine(e.Message)}", e);
            }
            using (results)
            {
                var logits = results[0].GetTensorDataAsSpan<float>();
                int classes = logits.Length / batch.Count;
                for (int i = 0; i < read.Count; i++)
                {
                    var row = logits.Slice(i * classes, classes);
                    int best = 0;
                    for (int c = 1; c < classes; c++) if (row[c] > row[best]) best = c;
                    predictions.Add(best);
                }
            }
            progress?.Report(new ProgressReport($"evaluating {Path.GetFileName(modelName)}", predictions.Count, data.Count, "images"));
        }
        return predictions.ToArray();
    }

    public static ClassificationResult Score(IReadOnlyList<int> predictions, IReadOnlyList<long> labels)
    {
        if (predictions.Count != labels.Count)
            throw new OnnxViTQException($"{predictions.Count} predictions but {labels.Count} labels");
        return new ClassificationResult(predictions.Count, predictions.Where((p, i) => p == labels[i]).Count());
    }

    /// <summary>Fraction of samples where both models predict the same class.</summary>
    public static double Agreement(IReadOnlyList<int> a, IReadOnlyList<int> b) =>
        a.Count == 0 ? 0 : (double)a.Where((p, i) => p == b[i]).Count() / a.Count;
}
