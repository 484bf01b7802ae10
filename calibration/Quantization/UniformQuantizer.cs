namespace OnnxViTQ.Quantization;

/// <summary>A quantizer as the compiler sees it: its kind and bit width, and a simulation of
/// quantize-then-dequantize used by searches and tests. Emitters give each kind its graph form.</summary>
public interface IQuantizer
{
    string Kind { get; }
    int Bits { get; }

    /// <summary>Replaces each element by its quantized-dequantized value.</summary>
    void Simulate(Span<float> values, ReadOnlySpan<long> shape);
}

/// <summary>
/// Uniform affine quantization (METHODS.md, "Uniform"): q = clamp(round(x/s) + z, qmin, qmax),
/// x̂ = s(q − z), round half to even (as ONNX QuantizeLinear). Per tensor (one s, z) or per
/// channel along <see cref="Axis"/>. Symmetric: z = 0, s = max|x| / (2^(k−1) − 1), q in
/// [−2^(k−1), 2^(k−1) − 1], stored as int8. Asymmetric: s = (max − min)/(2^k − 1), z = round(−min/s),
/// q in [0, 2^k − 1], stored as uint8. Bit widths below 8 restrict the integer range inside the
/// 8-bit storage type.
/// </summary>
public sealed class UniformQuantizer : IQuantizer
{
    private UniformQuantizer(float[] scales, int[] zeroPoints, int bits, bool symmetric, int? axis)
    {
        Scales = scales;
        ZeroPoints = zeroPoints;
        Bits = bits;
        Symmetric = symmetric;
        Axis = axis;
        QMin = symmetric ? -(1 << (bits - 1)) : 0;
        QMax = symmetric ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
    }

    public string Kind => Symmetric ? "uniform-symmetric" : "uniform-asymmetric";
    public int Bits { get; }
    public bool Symmetric { get; }

    /// <summary>Channel axis for per-channel parameters; null for per-tensor.</summary>
    public int? Axis { get; }

    public IReadOnlyList<float> Scales { get; }
    public IReadOnlyList<int> ZeroPoints { get; }
    public int QMin { get; }
    public int QMax { get; }

    /// <summary>Smallest scale used, so a constant-zero tensor still gets a valid quantizer.</summary>
    public const float MinScale = 1e-8f;

    public static UniformQuantizer SymmetricFromMaxAbs(ReadOnlySpan<float> maxAbs, int bits, int? axis)
    {
        CheckBits(bits);
        int qmax = (1 << (bits - 1)) - 1;
        var scales = new float[maxAbs.Length];
        for (int i = 0; i < scales.Length; i++) scales[i] = Math.Max(maxAbs[i] / qmax, MinScale);
        return new UniformQuantizer(scales, new int[scales.Length], bits, symmetric: true, axis);
    }

    /// <summary>Per-tensor asymmetric quantizer covering [min, max]; the range is widened to
    /// include 0 so that zero is exactly representable (padding, masked attention).</summary>
    public static UniformQuantizer AsymmetricFromRange(float min, float max, int bits)
    {
        CheckBits(bits);
        if (!float.IsFinite(min) || !float.IsFinite(max) || min > max)
            throw new ArgumentException($"invalid range [{min}, {max}]");
        min = Math.Min(min, 0f);
        max = Math.Max(max, 0f);
        int levels = (1 << bits) - 1;
        float scale = Math.Max((max - min) / levels, MinScale);
        int zero = Math.Clamp((int)MathF.Round(-min / scale, MidpointRounding.ToEven), 0, levels);
        return new UniformQuantizer([scale], [zero], bits, symmetric: false, axis: null);
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

    public void Simulate(Span<float> values, ReadOnlySpan<long> shape)
    {
        if (Axis is null)
        {
            for (int i = 0; i < values.Length; i++) values[i] = Dequantize(Quantize(values[i]));
            return;
        }
        var (outer, channels, inner) = AxisLayout.Of(shape, Axis.Value);
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
        var q = new int[values.Length];
        if (Axis is null)
        {
            for (int i = 0; i < values.Length; i++) q[i] = Quantize(values[i]);
            return q;
        }
        var (outer, channels, inner) = AxisLayout.Of(shape, Axis.Value);
        if (channels != Scales.Count) throw new ArgumentException($"axis {Axis} has {channels} channels, the quantizer has {Scales.Count}");
        for (int o = 0; o < outer; o++)
            for (int c = 0; c < channels; c++)
                for (int i = 0; i < inner; i++)
                {
                    int at = (o * channels + c) * inner + i;
                    q[at] = Quantize(values[at], c);
                }
        return q;
    }

    public override string ToString() =>
        $"{Kind} {Bits}-bit {(Axis is null ? $"per-tensor s={Scales[0]:g4} z={ZeroPoints[0]}" : $"per-channel axis {Axis} ({Scales.Count} channels)")}";
}
