using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Evaluation;

/// <summary>Top-1 accuracy of a model's predictions, and agreement with a reference model's.</summary>
internal sealed record ClassificationResult(int Samples, int Correct)
{
    public double Top1 => Samples == 0 ? 0 : (double)Correct / Samples;
}

/// <summary>Runs an image classifier through ONNX Runtime and returns its top-1 predictions
/// (argmax of the first output). QDQ groups run as written unless <see cref="QdqExecution.Fused"/>
/// is asked for (how a deployment on this CPU runs them).</summary>
internal static class ClassificationEvaluator
{
    /// <summary>Predictions of an in-memory model.</summary>
    public static int[] Predict(Model model, string modelName, ICalibrationSource data, int batchSize = 64,
        IProgress<ProgressReport>? progress = null, CancellationToken cancel = default, QdqExecution qdq = QdqExecution.Reference)
    {
        using var session = OrtRuntime.CreateSession(model, modelName, qdq);
        return Predict(session, ImageInput.Of(model, modelName), modelName, data, batchSize, progress, cancel);
    }

    /// <summary>Predictions of a model file, run as saved (with its external data, if any);
    /// <paramref name="input"/> describes its image input.</summary>
    public static int[] PredictFile(string modelPath, ImageInput input, ICalibrationSource data, int batchSize = 64,
        IProgress<ProgressReport>? progress = null, CancellationToken cancel = default, QdqExecution qdq = QdqExecution.Reference)
    {
        using var session = OrtRuntime.CreateSession(modelPath, qdq);
        return Predict(session, input, modelPath, data, batchSize, progress, cancel);
    }

    private static int[] Predict(InferenceSession session, ImageInput input, string modelName, ICalibrationSource data, int batchSize,
        IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        var predictions = new List<int>(data.Count);
        ForEachLogitRow(session, input, modelName, data, batchSize, progress, cancel, row =>
        {
            int best = 0;
            for (int c = 1; c < row.Length; c++) if (row[c] > row[best]) best = c;
            predictions.Add(best);
        });
        return predictions.ToArray();
    }

    /// <summary>The first output of an in-memory model for every sample, one row per sample.</summary>
    public static float[][] Logits(Model model, string modelName, ICalibrationSource data, int batchSize = 64, QdqExecution qdq = QdqExecution.Reference)
    {
        using var session = OrtRuntime.CreateSession(model, modelName, qdq);
        var rows = new List<float[]>(data.Count);
        ForEachLogitRow(session, ImageInput.Of(model, modelName), modelName, data, batchSize, null, default, row => rows.Add(row.ToArray()));
        return rows.ToArray();
    }

    private delegate void RowAction(ReadOnlySpan<float> row);

    private static void ForEachLogitRow(InferenceSession session, ImageInput input, string modelName, ICalibrationSource data, int batchSize,
        IProgress<ProgressReport>? progress, CancellationToken cancel, RowAction onRow)
    {
        string output = session.OutputNames[0];
        int done = 0;
        using var runOptions = new RunOptions();
        progress?.Report(new ProgressReport($"evaluating {Path.GetFileName(modelName)}", 0, data.Count, "images"));
        foreach (var (batch, real) in input.Batches(data, batchSize))
        {
            cancel.ThrowIfCancellationRequested();
            using var x = OrtValue.CreateTensorValueFromMemory(batch.Data, input.Shape(batch.Count));
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
                for (int i = 0; i < real; i++) onRow(logits.Slice(i * classes, classes));
            }
            done += real;
            progress?.Report(new ProgressReport($"evaluating {Path.GetFileName(modelName)}", done, data.Count, "images"));
        }
    }

    /// <summary>Predictions of an image-bytes model file (<see cref="EmbeddedPreprocessing"/>): each
    /// image file's encoded bytes fed as they are, one run per image.</summary>
    public static int[] PredictEncodedFiles(string modelPath, IReadOnlyList<string> imageFiles, IProgress<ProgressReport>? progress = null,
        CancellationToken cancel = default)
    {
        using var session = OrtRuntime.CreateSession(modelPath);
        string input = session.InputNames[0], output = session.OutputNames[0];
        using var runOptions = new RunOptions();
        var predictions = new int[imageFiles.Count];
        for (int i = 0; i < imageFiles.Count; i++)
        {
            cancel.ThrowIfCancellationRequested();
            progress?.Report(new ProgressReport($"evaluating {Path.GetFileName(modelPath)}", i, imageFiles.Count, "images"));
            var bytes = File.ReadAllBytes(imageFiles[i]);
            using var x = OrtValue.CreateTensorValueFromMemory(bytes, [bytes.Length]);
            try
            {
                using var results = session.Run(runOptions, [input], [x], [output]);
                var row = results[0].GetTensorDataAsSpan<float>();
                int best = 0;
                for (int c = 1; c < row.Length; c++) if (row[c] > row[best]) best = c;
                predictions[i] = best;
            }
            catch (OnnxRuntimeException e)
            {
                throw new OnnxViTQException($"ONNX Runtime failed running '{modelPath}' on '{imageFiles[i]}': {OrtRuntime.FirstLine(e.Message)}", e);
            }
        }
        progress?.Report(new ProgressReport($"evaluating {Path.GetFileName(modelPath)}", imageFiles.Count, imageFiles.Count, "images"));
        return predictions;
    }

    public static ClassificationResult Score(IReadOnlyList<int> predictions, IReadOnlyList<long> labels)
    {
        if (predictions.Count != labels.Count)
            throw new OnnxViTQException($"{predictions.Count} predictions but {labels.Count} labels");
        return new ClassificationResult(predictions.Count, predictions.Where((p, i) => p == labels[i]).Count());
    }

    /// <summary>Fraction of samples where both models predict the same class.</summary>
    public static double Agreement(IReadOnlyList<int> a, IReadOnlyList<int> b)
    {
        if (a.Count != b.Count) throw new OnnxViTQException($"cannot compare {a.Count} predictions with {b.Count}");
        return a.Count == 0 ? 0 : (double)a.Where((p, i) => p == b[i]).Count() / a.Count;
    }
}
