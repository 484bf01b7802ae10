using OnnxViTQ.Ir;
using OnnxViTQ.Observers;

namespace OnnxViTQ.Quantization;

/// <summary>Which tensors a quantizer kind applies to.</summary>
internal enum QuantizerTarget { Weights, Activations, Both }

/// <summary>An observer a quantizer kind needs on an activation, by key: kinds asking for the
/// same key share one observer.</summary>
internal sealed record ObserverRequest(string Key, Func<IObserver> Create);

/// <summary>What fitting reads: calibration statistics (activations) — weights are read from
/// the site's constant.</summary>
internal sealed record FitContext(ActivationStatistics? Statistics)
{
    public T Observer<T>(QuantizationSite site, string key) where T : class, IObserver =>
        (Statistics ?? throw new InvalidOperationException($"activation '{site.Name}' needs calibration statistics, and none were collected"))
        .Get<T>(site.Value, key);
}

/// <summary>
/// A kind of quantizer, registered once in <see cref="QuantizerRegistry"/>: it states what it
/// applies to, its options and the observers it needs, and fits parameters for a site. The
/// fitted result (<see cref="FittedQuantizer"/>) simulates and emits itself.
/// </summary>
internal interface IQuantizerKind
{
    string Name { get; }
    string Description { get; }
    QuantizerTarget Target { get; }
    int MinBits => 2;
    int MaxBits => 8;
    IReadOnlyList<QuantizerOption> Options { get; }

    Granularity GranularityOf(QuantizationSite site);

    /// <summary>Why <paramref name="spec"/> cannot be used for <paramref name="role"/> (null: it can);
    /// checks beyond the options' own validation.</summary>
    string? Check(QuantizerSpec spec, TensorRole role) => null;

    /// <summary>Observers to attach to the site's value during calibration (activations only).</summary>
    IEnumerable<ObserverRequest> Observers(QuantizationSite site);

    /// <summary>Parameters for <paramref name="site"/> (whose <see cref="QuantizationSite.Spec"/> is of this kind).</summary>
    FittedQuantizer Fit(QuantizationSite site, FitContext context);
}

/// <summary>
/// A fitted quantizer: its parameters, quantize-dequantize simulation (for searches, error
/// measurement and tests) and its portable ONNX form. Simulation and emission compute the same
/// function, so ONNX Runtime running the emitted graph reproduces <see cref="Simulate"/>.
/// </summary>
internal abstract class FittedQuantizer
{
    public abstract string Kind { get; }
    public abstract int Bits { get; }
    public abstract Granularity Granularity { get; }

    /// <summary>Replaces each element by its quantized-dequantized value. Activations are laid
    /// out [.., channels] (per-token kinds treat every row of the last axis as a token).</summary>
    public abstract void Simulate(Span<float> values, ReadOnlySpan<long> shape);

    /// <summary>The parameters, for reports (names and numbers or lists).</summary>
    public abstract IReadOnlyDictionary<string, object> Describe();

    /// <summary>Writes the quantizer in standard ONNX before the site's first use and returns
    /// the value the quantized uses read.</summary>
    public abstract Value EmitPortable(PortableBuilder builder, QuantizationSite site);

    public override string ToString() => $"{Kind} {Bits}-bit {Granularity.Name()}";
}

/// <summary>A per-tensor quantizer that maps each element on its own (<see cref="Apply"/>):
/// simulation is that map over the tensor. The log, shift-log2, tan and twin-uniform kinds.</summary>
internal abstract class ElementwiseQuantizer : FittedQuantizer
{
    public override Granularity Granularity => Granularity.PerTensor;

    /// <summary>Quantize-dequantize one value, with the same float operations as the emitted graph.</summary>
    public abstract float Apply(float x);

    public sealed override void Simulate(Span<float> values, ReadOnlySpan<long> shape)
    {
        Observers.Finite.Check(values, "simulated tensor");
        for (int i = 0; i < values.Length; i++) values[i] = Apply(values[i]);
    }
}
