using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;

namespace OnnxViTQ.Capture;

/// <summary>
/// Runs calibration data through ONNX Runtime and streams chosen intermediate tensors into
/// observers, batch by batch. The tensors are exposed as extra graph outputs of a copy of the
/// model; each batch's outputs are observed and released before the next batch runs, so memory
/// is bounded by the batch size whatever the number of samples.
/// </summary>
internal sealed class ActivationCapture : IDisposable
{
    private readonly InferenceSession _session;
    private readonly ImageInput _input;
    private readonly string[] _outputs;

    /// <summary>A session capturing <paramref name="tensorNames"/>; with <paramref name="onlyTheseTensors"/>
    /// the model's own outputs are dropped, so ONNX Runtime runs only the nodes they depend on.</summary>
    public ActivationCapture(Model model, IEnumerable<string> tensorNames, string modelName, bool onlyTheseTensors = false)
    {
        _input = ImageInput.Of(model, modelName);
        _outputs = tensorNames.Distinct().ToArray();
        var values = _outputs.Select(n => model.Graph.Lookup(n) ?? throw new ArgumentException($"model has no tensor '{n}'"));
        _session = OrtRuntime.CreateSession(OnnxModelWriter.ToBytes(model, values, onlyTheseTensors), modelName);
    }

    /// <summary>Observed samples so far.</summary>
    public long SamplesSeen { get; private set; }

    /// <summary>Called after each batch with the number of samples done (tests use it to check
    /// that retained memory does not grow).</summary>
    public Action<long>? AfterBatch { get; init; }

    /// <summary>Feeds up to <paramref name="maxSamples"/> samples of <paramref name="source"/> and
    /// hands every requested tensor of every batch to its observers.</summary>
    public void Run(ICalibrationSource source, IReadOnlyDictionary<string, IReadOnlyList<IObserver>> observers,
        int batchSize, int maxSamples, IProgress<ProgressReport>? progress = null, CancellationToken cancel = default)
    {
        foreach (var name in observers.Keys)
            if (!_outputs.Contains(name)) throw new ArgumentException($"tensor '{name}' was not set up for capture");
        int total = Math.Min(source.Count, maxSamples);
        string[] requested = observers.Keys.ToArray();
        long done = 0;
        progress?.Report(new ProgressReport("calibrating", 0, total, "samples"));
        using var runOptions = new RunOptions();
        // A fixed-batch export gets its last batch padded with copies of the last sample:
        // min/max are unchanged, histograms see a few duplicates.
        foreach (var (batch, real) in _input.Batches(source, batchSize, total))
        {
            cancel.ThrowIfCancellationRequested();
            using var inputValue = OrtValue.CreateTensorValueFromMemory(batch.Data, _input.Shape(batch.Count));
            IDisposableReadOnlyCollection<OrtValue> results;
            try
            {
                results = _session.Run(runOptions, [_input.Name], [inputValue], requested);
            }
            catch (OnnxRuntimeException e)
            {
                throw new OnnxViTQException($"ONNX Runtime failed on calibration batch at sample {done} of '{source.Name}': {OrtRuntime.FirstLine(e.Message)}", e);
            }
            using (results)
            {
                for (int i = 0; i < requested.Length; i++)
                {
                    var value = results[i];
                    var info = value.GetTensorTypeAndShape();
                    if (info.ElementDataType != TensorElementType.Float)
                        throw new OnnxViTQException($"tensor '{requested[i]}' is {info.ElementDataType}, only float tensors can be calibrated");
                    var data = value.GetTensorDataAsSpan<float>();
                    foreach (var o in observers[requested[i]]) o.Observe(data, info.Shape);
                }
            }
            done += real;
            SamplesSeen = done;
            AfterBatch?.Invoke(done);
            progress?.Report(new ProgressReport("calibrating", done, total, "samples"));
        }
    }

    public void Dispose() => _session.Dispose();
}
