using OnnxViTQ.Ir;
using OnnxViTQ.Observers;

namespace OnnxViTQ.Quantization;

/// <summary>
/// Kind <c>twin-uniform</c> (PTQ4ViT): two uniform ranges with half the codes each.
/// Post-Softmax (<c>mode=softmax</c>): R1 = [0, t] with Δ₁ = t/(2^(k−1) − 1) for x &lt; t, R2 = [0, M]
/// with Δ₂ = M/(2^(k−1) − 1) otherwise; the split t is searched over M·2^(−i). Post-GELU
/// (<c>mode=signed</c>): negatives on R1 with Δ₁ = Δ₂/2^m (2^(k−1) codes), non-negatives on R2 with
/// Δ₂ = max/(2^(k−1) − 1); m is searched. PTQ4ViT picks scales by a Hessian-guided error that
/// needs the task loss's gradients; here both searches minimise the squared error over the
/// calibration histogram. <c>mode=auto</c>: softmax for post-Softmax sites and non-negative data.
/// </summary>
internal sealed class TwinUniformQuantizerKind : IQuantizerKind
{
    public string Name => "twin-uniform";
    public string Description => "two uniform ranges with half the codes each (PTQ4ViT; post-Softmax and post-GELU)";
    public QuantizerTarget Target => QuantizerTarget.Activations;

    public IReadOnlyList<QuantizerOption> Options { get; } =
    [
        ActivationRange.RangeOption, ActivationRange.PercentileOption,
        QuantizerOption.Choice("mode", "auto, softmax (two positive ranges) or signed (negatives and positives)", "auto", "softmax", "signed"),
    ];

    public Granularity GranularityOf(QuantizationSite site) => Granularity.PerTensor;

    public IEnumerable<ObserverRequest> Observers(QuantizationSite site) =>
        [new(ObserverKeys.Histogram, () => new HistogramObserver(tensor: site.Name)), ActivationRange.Request(site, site.Spec!)];

    public FittedQuantizer Fit(QuantizationSite site, FitContext context)
    {
        int bits = site.Spec!.Bits;
        var (min, max) = ActivationRange.Estimate(site, site.Spec, context);
        var histogram = context.Observer<HistogramObserver>(site, ObserverKeys.Histogram);
        string mode = site.Spec.Option("mode");
        bool softmax = mode == "softmax" || (mode == "auto" && (site.Role == TensorRole.PostSoftmax || min >= 0));
        max = Math.Max(max, UniformQuantizer.MinScale);
        int half = 1 << (bits - 1);
        var candidates = new List<TwinUniformQuantizer>();
        if (softmax)
            for (int i = 1; i <= 16; i++)
            {
                float t = max * MathF.Pow(2, -i);
                candidates.Add(new TwinUniformQuantizer(bits, t, t / (half - 1), 0, half - 1, max / (half - 1), 0, half - 1));
            }
        else
        {
            float step2 = max / (half - 1);
            for (int m = 0; m <= 16; m++)
                candidates.Add(new TwinUniformQuantizer(bits, 0, step2 * MathF.Pow(2, -m), -half, 0, step2, 0, half - 1));
        }
        return candidates.MinBy(q => ActivationRange.HistogramError(histogram, x => { double d = x - q.Apply((float)x); return d * d; }))!;
    }
}

/// <summary>x̂ = x &lt; t ? Δ₁·clamp(round(x/Δ₁), a₁, b₁) : Δ₂·clamp(round(x/Δ₂), a₂, b₂).</summary>
internal sealed class TwinUniformQuantizer(int bits, float threshold, float step1, int min1, int max1, float step2, int min2, int max2) : ElementwiseQuantizer
{
    public override string Kind => "twin-uniform";
    public override int Bits { get; } = bits;
    public float Threshold { get; } = threshold;
    public float Step1 { get; } = Math.Max(step1, UniformQuantizer.MinScale);
    public float Step2 { get; } = Math.Max(step2, UniformQuantizer.MinScale);

    public override float Apply(float x) => x < Threshold
        ? Math.Clamp(MathF.Round(x / Step1, MidpointRounding.ToEven), min1, max1) * Step1
        : Math.Clamp(MathF.Round(x / Step2, MidpointRounding.ToEven), min2, max2) * Step2;

    public override IReadOnlyDictionary<string, object> Describe() => new Dictionary<string, object>
    {
        ["threshold"] = Threshold, ["step1"] = Step1, ["codes1"] = new[] { min1, max1 }, ["step2"] = Step2, ["codes2"] = new[] { min2, max2 },
    };

    public override Value EmitPortable(PortableBuilder b, QuantizationSite site)
    {
        Value Range(string tag, float step, int lo, int hi) => b.Op("Mul", $"{tag}_dequantized",
            b.Op("Clip", $"{tag}_codes", b.Op("Round", $"{tag}_rounded", b.Op("Div", $"{tag}_scaled", site.Value, b.Scalar($"{tag}_step", step))),
                b.Scalar($"{tag}_min", lo), b.Scalar($"{tag}_max", hi)),
            b.Scalar($"{tag}_step_out", step));
        var below = b.Op("Less", "below", site.Value, b.Scalar("threshold", Threshold));
        return b.Op("Where", "dequantized", below, Range("r1", Step1, min1, max1), Range("r2", Step2, min2, max2));
    }
}
