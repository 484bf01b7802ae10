using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Tests.Quantizers;

// docs/ARCHITECTURE.md's worked example ("Adding a quantizer kind"): a whole activation kind in one
// file. Registered with one line (QuantizerRegistry.Register(new PowerOfTwoQuantizerKind())), it
// runs portably and takes part in search-intervals, optimize-activation-steps and choose-ranges
// (IAdjustableStep), the ort lowering's integer kernels (IIntegerGrid) and the native lowering
// (INativeActivation) without any pass knowing it. Not shipped: PowerOfTwoKindTests uses it.

/// <summary>Kind <c>pow2-uniform</c>: uniform per tensor whose step is a power of two (a
/// requantization that is a shift), covering the activation's range.</summary>
internal sealed class PowerOfTwoQuantizerKind : IQuantizerKind
{
    public string Name => "pow2-uniform";
    public string Description => "uniform per tensor with a power-of-two step (shift-only rescaling)";
    public QuantizerTarget Target => QuantizerTarget.Activations;
    public IReadOnlyList<QuantizerOption> Options { get; } = [ActivationRange.RangeOption, ActivationRange.PercentileOption];
    public Granularity GranularityOf(QuantizationSite site) => Granularity.PerTensor;
    public IEnumerable<ObserverRequest> Observers(QuantizationSite site) => [ActivationRange.Request(site, site.Spec!)];

    public FittedQuantizer Fit(QuantizationSite site, FitContext context)
    {
        var (min, max) = ActivationRange.Estimate(site, site.Spec!, context);
        return PowerOfTwoQuantizer.Covering(min, max, site.Spec!.Bits);
    }
}

/// <summary>The grid with step 2^⌈log2((max − min)/(2^k − 1))⌉ and zero point round(−min/step):
/// an ordinary affine grid, so it simulates and emits as one; moving its step (a search's
/// multiplier m) scales the covered range by m and rounds the step up to a power of two again.</summary>
internal sealed class PowerOfTwoQuantizer : FittedQuantizer, IIntegerGrid, IAdjustableStep, INativeActivation
{
    private readonly FittedQuantizer _grid;
    private readonly float _min, _max;

    private PowerOfTwoQuantizer(FittedQuantizer grid, float min, float max) => (_grid, _min, _max) = (grid, min, max);

    public static PowerOfTwoQuantizer Covering(float min, float max, int bits)
    {
        (min, max) = (Math.Min(min, 0f), Math.Max(max, 0f));
        float step = MathF.Pow(2, MathF.Ceiling(MathF.Log2(Math.Max((max - min) / ((1 << bits) - 1), 1e-8f))));
        int zero = (int)MathF.Round(-min / step, MidpointRounding.ToEven);
        return new PowerOfTwoQuantizer(IntegerGrids.Asymmetric(step, zero, bits), min, max);
    }

    private IIntegerGrid Grid => _grid.Grid();
    public override string Kind => "pow2-uniform";
    public override int Bits => _grid.Bits;
    public override Granularity Granularity => Granularity.PerTensor;
    public float Step => Grid.Scales[0];

    public override void Simulate(Span<float> values, ReadOnlySpan<long> shape) => _grid.Simulate(values, shape);
    public override IReadOnlyDictionary<string, object> Describe() => new Dictionary<string, object>
    {
        ["step"] = Step, ["exponent"] = (int)MathF.Log2(Step), ["zero_point"] = Grid.ZeroPoints[0],
    };
    public override Value EmitPortable(PortableBuilder builder, QuantizationSite site) => _grid.EmitPortable(builder, site);

    public bool Symmetric => false;
    public int? Axis => null;
    public IReadOnlyList<float> Scales => Grid.Scales;
    public IReadOnlyList<int> ZeroPoints => Grid.ZeroPoints;
    public int QMin => Grid.QMin;
    public int QMax => Grid.QMax;
    public IReadOnlyList<int>? Codes => null;

    public FittedQuantizer WithStepScaled(float m) => m == 1f ? this : Covering(_min * m, _max * m, Bits);
    public FittedQuantizer WithStepScaled(float m, float[] weights, long[] shape) => throw new NotSupportedException("pow2-uniform quantizes activations only");

    public NativeActivationForm? NativeForm => (_grid as INativeActivation)?.NativeForm;
}
