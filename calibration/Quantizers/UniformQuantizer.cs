using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.Patterns;

namespace OnnxViTQ.Quantization;

/// <summary>
/// Kind <c>uniform</c>: weights symmetric per output channel (per tensor when the weight has no
/// channel axis), activations asymmetric per tensor (symmetric with <c>symmetric=true</c>).
/// Ranges: weights from max |w| per channel, or with <c>range=mse</c> the per-channel clipping
/// ratio that minimises the squared error; activations per <see cref="ActivationRange"/>.
/// </summary>
internal sealed class UniformQuantizerKind : IQuantizerKind, IAcceptsDerivedGrid
{
    public string Name => "uniform";
    public string Description => "uniform affine: weights symmetric per output channel, activations asymmetric per tensor (QuantizeLinear/DequantizeLinear)";
    public QuantizerTarget Target => QuantizerTarget.Both;

    public IReadOnlyList<QuantizerOption> Options { get; } =
    [
        ActivationRange.RangeOption,
        ActivationRange.PercentileOption,
        QuantizerOption.Choice("symmetric", "activations: symmetric (int8, zero point 0) instead of asymmetric (uint8)", "false", "true"),
        QuantizerOption.Choice("granularity", "activations: one range per tensor, or per channel of a feature map [N, C, …] (axis 1; for depthwise-convolution inputs, where each output channel reads one input channel)", "tensor", "channel"),
    ];

    public string? Check(QuantizerSpec spec, TensorRole role) =>
        role == TensorRole.Weight && spec.Option("range") == "percentile" ? "weights take range=minmax or range=mse"
        : PerChannelActivations(spec) && role == TensorRole.Weight ? "granularity applies to activations (weights are per output channel already)"
        : PerChannelActivations(spec) && spec.Option("range") != "minmax" ? "granularity=channel takes range=minmax"
        : PerChannelActivations(spec) && spec.Option("symmetric") == "true" ? "granularity=channel is asymmetric"
        : null;

    private static bool PerChannelActivations(QuantizerSpec spec) => spec.Option("granularity") == "channel";

    public Granularity GranularityOf(QuantizationSite site) =>
        site.IsWeight && site.ChannelAxis is not null ? Granularity.PerChannel
        : !site.IsWeight && PerChannelActivations(site.Spec!) ? Granularity.PerChannel
        : Granularity.PerTensor;

    public IEnumerable<ObserverRequest> Observers(QuantizationSite site) =>
        site.IsWeight ? []
        : PerChannelActivations(site.Spec!) ? [new ObserverRequest(ObserverKeys.FeatureChannels, () => new FeatureMapChannelObserver(site.Name))]
        : [ActivationRange.Request(site, site.Spec!)];

    public FittedQuantizer Fit(QuantizationSite site, FitContext context)
    {
        var spec = site.Spec!;
        if (site.IsWeight)
        {
            var w = WeightTensor.Read(site);
            return UniformQuantizer.FitWeight(w.Values, w.Shape, spec.Bits, site.ChannelAxis, mse: spec.Option("range") == "mse");
        }
        if (PerChannelActivations(spec))
        {
            var channels = context.Observer<FeatureMapChannelObserver>(site, ObserverKeys.FeatureChannels);
            if (channels.Count == 0) throw new OnnxViTQException($"activation '{site.Name}' saw no calibration data");
            return UniformQuantizer.AsymmetricFromRanges(channels.Min, channels.Max, spec.Bits, axis: 1);
        }
        bool symmetric = spec.Option("symmetric") == "true";
        var (min, max) = ActivationRange.Estimate(site, spec, context, symmetric ? SymmetricError(spec.Bits) : null);
        return symmetric
            ? UniformQuantizer.SymmetricFromMaxAbs([Math.Max(Math.Abs(min), Math.Abs(max))], spec.Bits, null)
            : UniformQuantizer.AsymmetricFromRange(min, max, spec.Bits);
    }

    /// <summary>A reparameterization's per-tensor grid is a uniform quantizer already.</summary>
    public FittedQuantizer FromDerivedGrid(FittedQuantizer grid, QuantizerSpec spec) =>
        grid is UniformQuantizer { Axis: null } ? grid : throw new ArgumentException($"a derived grid must be uniform per tensor, not {grid}");

    private static Func<float, float, Func<double, double>> SymmetricError(int bits) => (lo, hi) =>
    {
        var q = UniformQuantizer.SymmetricFromMaxAbs([Math.Max(Math.Abs(lo), Math.Abs(hi))], bits, null);
        return x => { double d = x - q.Dequantize(q.Quantize((float)x)); return d * d; };
    };
}

/// <summary>A weight site's constant as float32, with its shape.</summary>
internal readonly record struct WeightTensor(float[] Values, long[] Shape)
{
    public static WeightTensor Read(QuantizationSite site)
    {
        if (!Constants.TryGetTensor(site.Value, out var t)) throw new InvalidOperationException($"weight '{site.Name}' is not constant");
        var values = t.ToFloats();
        Finite.Check(values, site.Name);
        return new WeightTensor(values, t.Dims.ToArray());
    }
}

/// <summary>
/// Uniform affine quantization (METHODS.md, "Uniform"): q = clamp(round(x/s) + z, qmin, qmax),
/// x̂ = s(q − z), round half to even (as ONNX QuantizeLinear). Per tensor (one s, z) or per
/// channel along <see cref="Axis"/>. Symmetric: z = 0, s = max|x| / (2^(k−1) − 1), q in
/// [−2^(k−1), 2^(k−1) − 1], stored as int8. Asymmetric: s = (max − min)/(2^k − 1), z = round(−min/s),
/// q in [0, 2^k − 1], stored as uint8. Bit widths below 8 restrict the integer range inside the
/// 8-bit storage type. A weight's quantizer also holds its integer <see cref="Codes"/>.
/// </summary>
internal sealed class UniformQuantizer : FittedQuantizer, IIntegerGrid, IAdjustableStep, INativeActivation, IChoosableRounding
{
    private UniformQuantizer(float[] scales, int[] zeroPoints, int bits, bool symmetric, int? axis, int[]? codes = null)
    {
        Scales = scales;
        ZeroPoints = zeroPoints;
        Bits = bits;
        Symmetric = symmetric;
        Axis = axis;
        Codes = codes;
        QMin = symmetric ? -(1 << (bits - 1)) : 0;
        QMax = symmetric ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
    }

    public override string Kind => "uniform";
    public override int Bits { get; }
    public override Granularity Granularity => Axis is null ? Granularity.PerTensor : Granularity.PerChannel;
    public bool Symmetric { get; }

    /// <summary>Channel axis for per-channel parameters; null for per-tensor.</summary>
    public int? Axis { get; }

    public IReadOnlyList<float> Scales { get; }
    public IReadOnlyList<int> ZeroPoints { get; }
    public int QMin { get; }
    public int QMax { get; }

    /// <summary>Weights: the integer codes to emit (C order); null for activations.</summary>
    public IReadOnlyList<int>? Codes { get; }

    /// <summary>Smallest scale used, so a constant-zero tensor still gets a valid quantizer.</summary>
    public const float MinScale = 1e-8f;

    public static UniformQuantizer SymmetricFromMaxAbs(ReadOnlySpan<float> maxAbs, int bits, int? axis)
    {
        CheckBits(bits);
        int qmax = (1 << (bits - 1)) - 1;
        var scales = new float[maxAbs.Length];
        for (int i = 0; i < scales.Length; i++)
        {
            if (!float.IsFinite(maxAbs[i])) throw new OnnxViTQException($"cannot quantize a range of {maxAbs[i]}");
            scales[i] = Math.Max(maxAbs[i] / qmax, MinScale);
        }
        return new UniformQuantizer(scales, new int[scales.Length], bits, symmetric: true, axis);
    }

    /// <summary>Per-tensor asymmetric quantizer covering [min, max]; the range is widened to
    /// include 0 so that zero is exactly representable (padding, masked attention).</summary>
    public static UniformQuantizer AsymmetricFromRange(float min, float max, int bits)
    {
        CheckBits(bits);
        if (!float.IsFinite(min) || !float.IsFinite(max) || min > max)
            throw new OnnxViTQException($"cannot quantize the range [{min}, {max}]");
        min = Math.Min(min, 0f);
        max = Math.Max(max, 0f);
        int levels = (1 << bits) - 1;
        float scale = Math.Max((max - min) / levels, MinScale);
        int zero = Math.Clamp((int)MathF.Round(-min / scale, MidpointRounding.ToEven), 0, levels);
        return new UniformQuantizer([scale], [zero], bits, symmetric: false, axis: null);
    }

    /// <summary>Asymmetric per channel along <paramref name="axis"/>: each channel's range widened
    /// to include 0, as <see cref="AsymmetricFromRange"/>.</summary>
    public static UniformQuantizer AsymmetricFromRanges(IReadOnlyList<float> min, IReadOnlyList<float> max, int bits, int axis)
    {
        var channels = Enumerable.Range(0, min.Count).Select(c => AsymmetricFromRange(min[c], max[c], bits)).ToList();
        return new UniformQuantizer(channels.Select(q => q.Scales[0]).ToArray(), channels.Select(q => q.ZeroPoints[0]).ToArray(), bits, symmetric: false, axis);
    }

    /// <summary>A per-tensor asymmetric quantizer with given parameters (reparameterizations
    /// derive them exactly).</summary>
    public static UniformQuantizer Asymmetric(float scale, int zeroPoint, int bits)
    {
        CheckBits(bits);
        if (!(scale > 0) || !float.IsFinite(scale)) throw new OnnxViTQException($"invalid scale {scale}");
        return new UniformQuantizer([scale], [Math.Clamp(zeroPoint, 0, (1 << bits) - 1)], bits, symmetric: false, axis: null);
    }

    /// <summary>Symmetric weight quantizer per channel along <paramref name="axis"/> (per tensor
    /// when null) with its codes; <paramref name="mse"/> searches each channel's clipping ratio
    /// in [0.5, 1] for the least squared error.</summary>
    public static UniformQuantizer FitWeight(float[] w, long[] shape, int bits, int? axis, bool mse)
    {
        var maxAbs = AxisLayout.MaxAbs(w, shape, axis);
        if (mse) maxAbs = BestClipping(w, shape, axis, maxAbs, bits);
        var q = SymmetricFromMaxAbs(maxAbs, bits, axis);
        return q.WithCodes(q.QuantizeAll(w, shape));
    }

    FittedQuantizer IChoosableRounding.WithCodes(int[] codes) => WithCodes(codes);

    /// <summary>The same quantizer with these codes (e.g. rounded differently by a later pass).</summary>
    public UniformQuantizer WithCodes(int[] codes)
    {
        foreach (int c in codes)
            if (c < QMin || c > QMax) throw new ArgumentException($"code {c} is outside [{QMin}, {QMax}]");
        return new UniformQuantizer(Scales.ToArray(), ZeroPoints.ToArray(), Bits, Symmetric, Axis, codes);
    }

    /// <summary>Activations: the interval [(qmin − z)·s, (qmax − z)·s] scaled by m about zero, as a
    /// grid of the same symmetry (an asymmetric one refitted to the scaled interval).</summary>
    public FittedQuantizer WithStepScaled(float m)
    {
        if (m == 1f) return this;
        if (Axis is { } axis)
        {
            if (Codes is not null) throw new InvalidOperationException("a weight grid's step is scaled with its weights (WithStepScaled(m, weights, shape))");
            if (Symmetric) return SymmetricFromMaxAbs(Scales.Select(sc => sc * QMax * m).ToArray(), Bits, axis);
            var lows = Scales.Select((sc, c) => (QMin - ZeroPoints[c]) * sc * m).ToArray();
            var highs = Scales.Select((sc, c) => (QMax - ZeroPoints[c]) * sc * m).ToArray();
            return AsymmetricFromRanges(lows, highs, Bits, axis);
        }
        if (Symmetric) return SymmetricFromMaxAbs([Scales[0] * QMax * m], Bits, null);
        float lo = (QMin - ZeroPoints[0]) * Scales[0], hi = (QMax - ZeroPoints[0]) * Scales[0];
        return AsymmetricFromRange(lo * m, hi * m, Bits);
    }

    /// <summary>Weights: every channel's step scaled by m, the codes rounded again on the scaled grid.</summary>
    public FittedQuantizer WithStepScaled(float m, float[] weights, long[] shape)
    {
        if (m == 1f) return this;
        if (!Symmetric) throw new InvalidOperationException("weight grids are symmetric");
        var scaled = SymmetricFromMaxAbs(Scales.Select(s => s * QMax * m).ToArray(), Bits, Axis);
        return scaled.WithCodes(scaled.QuantizeAll(weights, shape));
    }

    /// <summary>A per-tensor grid runs natively as a static grid; per-channel activations have no form.</summary>
    public NativeActivationForm? NativeForm => Axis is null ? new StaticGridForm(Scales[0], ZeroPoints[0], QMin, QMax, Symmetric, Bits) : null;

    private static float[] BestClipping(float[] w, long[] shape, int? axis, float[] maxAbs, int bits)
    {
        var (outer, channels, inner) = axis is null ? new AxisLayout(1, 1, w.Length) : AxisLayout.Of(shape, axis.Value);
        int qmax = (1 << (bits - 1)) - 1;
        var best = (float[])maxAbs.Clone();
        for (int c = 0; c < channels; c++)
        {
            double bestError = double.PositiveInfinity;
            for (int step = 0; step <= 50; step++)
            {
                float m = maxAbs[c] * (1 - step / 100f);
                if (m <= 0) break;
                float s = m / qmax;
                double error = 0;
                for (int o = 0; o < outer && error < bestError; o++)
                {
                    int at = (o * channels + c) * inner;
                    for (int i = 0; i < inner; i++)
                    {
                        float x = w[at + i];
                        float q = Math.Clamp(MathF.Round(x / s, MidpointRounding.ToEven), -qmax - 1, qmax);
                        float d = x - q * s;
                        error += d * d;
                    }
                }
                if (error < bestError) { bestError = error; best[c] = m; }
            }
        }
        return best;
    }

    private static void CheckBits(int bits)
    {
        if (bits is < 2 or > 8) throw new ArgumentOutOfRangeException(nameof(bits), bits, "2 to 8 bits are supported");
    }

    public int Quantize(float x, int channel = 0)
    {
        float q = MathF.Round(x / Scales[channel], MidpointRounding.ToEven) + ZeroPoints[channel];
        return (int)Math.Clamp(q, QMin, QMax);
    }

    public float Dequantize(int q, int channel = 0) => (q - ZeroPoints[channel]) * Scales[channel];

    public override void Simulate(Span<float> values, ReadOnlySpan<long> shape)
    {
        Finite.Check(values, "simulated tensor");
        if (Axis is null)
        {
            for (int i = 0; i < values.Length; i++) values[i] = Dequantize(Quantize(values[i]));
            return;
        }
        var (outer, channels, inner) = Layout(shape);
        for (int o = 0; o < outer; o++)
            for (int c = 0; c < channels; c++)
            {
                var block = values.Slice((o * channels + c) * inner, inner);
                for (int i = 0; i < block.Length; i++) block[i] = Dequantize(Quantize(block[i], c), c);
            }
    }

    /// <summary>The integer codes of <paramref name="values"/> (C order, shape <paramref name="shape"/>).</summary>
    public int[] QuantizeAll(ReadOnlySpan<float> values, ReadOnlySpan<long> shape)
    {
        Finite.Check(values, "quantized tensor");
        var q = new int[values.Length];
        if (Axis is null)
        {
            for (int i = 0; i < values.Length; i++) q[i] = Quantize(values[i]);
            return q;
        }
        var (outer, channels, inner) = Layout(shape);
        for (int o = 0; o < outer; o++)
            for (int c = 0; c < channels; c++)
                for (int i = 0; i < inner; i++)
                {
                    int at = (o * channels + c) * inner + i;
                    q[at] = Quantize(values[at], c);
                }
        return q;
    }

    private AxisLayout Layout(ReadOnlySpan<long> shape)
    {
        var layout = AxisLayout.Of(shape, Axis!.Value);
        if (layout.Channels != Scales.Count)
            throw new ArgumentException($"axis {Axis} has {layout.Channels} channels, the quantizer has {Scales.Count}");
        return layout;
    }

    public override IReadOnlyDictionary<string, object> Describe() => new Dictionary<string, object>
    {
        ["symmetric"] = Symmetric,
        ["axis"] = Axis is null ? "none" : Axis.Value,
        ["scales"] = Scales,
        ["zero_points"] = ZeroPoints,
    };

    /// <summary>
    /// Weight W: <c>DequantizeLinear(W_int8, s[C], 0[C], axis)</c> with the stored codes.
    /// Activation x: <c>DequantizeLinear(QuantizeLinear(x, s, z), s, z)</c>, uint8 (int8 when
    /// symmetric); below 8 bits a <c>Clip(q, qmin, qmax)</c> on the codes keeps the bit width's range.
    /// </summary>
    public override Value EmitPortable(PortableBuilder b, QuantizationSite site)
    {
        if (site.IsWeight)
        {
            if (!Constants.TryGetTensor(site.Value, out var w)) throw new InvalidOperationException($"weight '{site.Name}' is not constant");
            var codes = Codes ?? QuantizeAll(w.ToFloats(), w.Dims.ToArray());
            if (codes.Count != w.ElementCount) throw new InvalidOperationException($"'{site.Name}' has {w.ElementCount} elements but {codes.Count} codes");
            var qw = b.Constant("quantized", Tensor.From<sbyte>(DataType.Int8, w.Dims, codes.Select(c => (sbyte)c).ToArray()));
            var (scale, zero) = Parameters(b, DataType.Int8);
            var attrs = Axis is { } axis ? new[] { AttributeValue.Int("axis", axis) } : [];
            return b.Node("DequantizeLinear", "dequantized", [qw, scale, zero], attrs);
        }
        var storage = Symmetric ? DataType.Int8 : DataType.UInt8;
        var (s, z) = Parameters(b, storage);
        // Per channel (a feature map's axis 1): QuantizeLinear/DequantizeLinear per axis (opset 13).
        var axisAttribute = Axis is { } channelAxis ? new[] { AttributeValue.Int("axis", channelAxis) } : [];
        var q = b.Node("QuantizeLinear", "quantized", [site.Value, s, z], axisAttribute);
        q.Type = new TensorTypeInfo(storage, site.Value.Type?.Shape);
        if (Bits < 8)
        {
            q = b.Node("Clip", $"quantized_{Bits}bit", [q, CodeConstant(b, "qmin", QMin, storage), CodeConstant(b, "qmax", QMax, storage)]);
            q.Type = new TensorTypeInfo(storage, site.Value.Type?.Shape);
        }
        return b.Node("DequantizeLinear", "dequantized", [q, s, z], axisAttribute);
    }

    private static Value CodeConstant(PortableBuilder b, string name, int value, DataType type) =>
        b.Constant(name, type == DataType.Int8 ? Tensor.From<sbyte>(DataType.Int8, [], [(sbyte)value]) : Tensor.From<byte>(DataType.UInt8, [], [(byte)value]));

    private (Value Scale, Value Zero) Parameters(PortableBuilder b, DataType zeroType)
    {
        long[] dims = Axis is null ? [] : [Scales.Count];
        var scale = b.Constant("scale", Tensor.FromFloats(dims, Scales.ToArray()));
        Tensor zero = zeroType == DataType.Int8
            ? Tensor.From<sbyte>(DataType.Int8, dims, ZeroPoints.Select(z => (sbyte)z).ToArray())
            : Tensor.From<byte>(DataType.UInt8, dims, ZeroPoints.Select(z => (byte)z).ToArray());
        return (scale, b.Constant("zero_point", zero));
    }

    public override string ToString() =>
        $"{(Symmetric ? "symmetric" : "asymmetric")} {Bits}-bit {(Axis is null ? $"per-tensor s={Scales[0]:g4} z={ZeroPoints[0]}" : $"per-channel axis {Axis} ({Scales.Count} channels)")}";
}
