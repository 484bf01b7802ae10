using OnnxViTQ.Capture;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>Observer state per calibrated activation, produced by <see cref="CollectActivationStatistics"/>.</summary>
public sealed class ActivationStatistics(IReadOnlyDictionary<Value, IObserver> observers, long samples)
{
    public IReadOnlyDictionary<Value, IObserver> Observers { get; } = observers;
    public long Samples { get; } = samples;

    public IObserver For(Value v) => Observers.TryGetValue(v, out var o) ? o
        : throw new InvalidOperationException($"activation '{v.Name}' was not calibrated");
}

/// <summary>
/// Analysis: runs the calibration data through ONNX Runtime once and feeds every target
/// activation to the observer its range estimator needs (streaming; see <see cref="ActivationCapture"/>).
/// </summary>
public sealed class CollectActivationStatistics(ICalibrationSource source, IRangeEstimator estimator,
    int batchSize, int maxSamples, string modelName) : IPass
{
    public string Name => "collect-activation-statistics";

    public PassResult Run(Model model, PassContext context)
    {
        var activations = context.Get<QuantizationTargets>().Activations;
        var observers = activations.ToDictionary(v => v, _ => estimator.CreateObserver());
        long samples = 0;
        if (observers.Count > 0)
        {
            using var capture = new ActivationCapture(model, activations.Select(v => v.Name), modelName);
            capture.Run(source, observers.ToDictionary(kv => kv.Key.Name, kv => (IReadOnlyList<IObserver>)[kv.Value]),
                batchSize, maxSamples, context.Progress, context.Cancellation);
            samples = capture.SamplesSeen;
        }
        context.Info($"calibrated {observers.Count} activations on {samples} samples of '{source.Name}'");
        context.Set(new ActivationStatistics(observers, samples));
        return PassResult.Unchanged;
    }
}
