using OnnxViTQ.Ir;
using OnnxViTQ.Observers;

namespace OnnxViTQ.Quantization;

/// <summary>
/// Kind <c>per-token</c> (ADFQ-ViT's per-patch quantizer without the outlier part): every token
/// row gets its own asymmetric uniform scale and zero point, computed at run time from the row's
/// range — nothing is fitted. The row range is widened to include 0 (padding rows stay exact).
/// </summary>
internal sealed class PerTokenQuantizerKind : IQuantizerKind
{
    public string Name => "per-token";
    public string Description => "dynamic asymmetric uniform with one scale and zero point per token row, computed at run time (ADFQ-ViT per-patch)";
    public QuantizerTarget Target => QuantizerTarget.Activations;
    public IReadOnlyList<QuantizerOption> Options { get; } = [];
    public Granularity GranularityOf(QuantizationSite site) => Granularity.PerToken;
    public IEnumerable<ObserverRequest> Observers(QuantizationSite site) => [];
    public FittedQuantizer Fit(QuantizationSite site, FitContext context) => new PerTokenQuantizer(site.Spec!.Bits);
}

/// <summary>Per-token dynamic quantization: for each row r of the last axis,
/// s_r = (max(r, 0) − min(r, 0))/(2^k − 1), z_r = round(−min/s_r), x̂ = s_r(clamp(round(x/s_r) + z_r, 0, 2^k − 1) − z_r).</summary>
internal sealed class PerTokenQuantizer(int bits) : FittedQuantizer, INativeActivation
{
    public override string Kind => "per-token";
    public override int Bits { get; } = bits is >= 2 and <= 8 ? bits : throw new ArgumentOutOfRangeException(nameof(bits));
    public override Granularity Granularity => Granularity.PerToken;
    public NativeActivationForm NativeForm => new TokenGridForm(Bits, 0);

    public override void Simulate(Span<float> values, ReadOnlySpan<long> shape)
    {
        Finite.Check(values, "simulated tensor");
        int width = RowWidth(values, shape);
        for (int at = 0; at < values.Length; at += width) QuantizeRow(values.Slice(at, width), Bits);
    }

    internal static int RowWidth(ReadOnlySpan<float> values, ReadOnlySpan<long> shape)
    {
        int width = shape.Length == 0 ? values.Length : checked((int)shape[^1]);
        if (width == 0 || values.Length % width != 0) throw new ArgumentException($"{values.Length} elements are not rows of {width}");
        return width;
    }

    /// <summary>Quantize-dequantize one token row in place (the same float operations as the emitted graph).</summary>
    internal static void QuantizeRow(Span<float> row, int bits)
    {
        float levels = (1 << bits) - 1;
        float hi = Math.Max(System.Numerics.Tensors.TensorPrimitives.Max(row), 0f);
        float lo = Math.Min(System.Numerics.Tensors.TensorPrimitives.Min(row), 0f);
        float s = Math.Max((hi - lo) / levels, UniformQuantizer.MinScale);
        float z = Math.Clamp(MathF.Round(-lo / s, MidpointRounding.ToEven), 0, levels);
        for (int i = 0; i < row.Length; i++)
        {
            float q = Math.Clamp(MathF.Round(row[i] / s, MidpointRounding.ToEven) + z, 0, levels);
            row[i] = (q - z) * s;
        }
    }

    /// <summary>The per-token fake-quant subgraph of <paramref name="x"/>:
    /// ReduceMax/ReduceMin over the last axis → s, z → Clip(Round(x/s) + z) → (q − z)·s.</summary>
    internal static Value Emit(PortableBuilder b, Value x, int bits, string tag = "")
    {
        float levels = (1 << bits) - 1;
        var zero = b.Scalar($"{tag}zero", 0f);
        var top = b.Scalar($"{tag}levels", levels);
        var hi = b.Op("Max", $"{tag}row_max", b.ReduceLast("ReduceMax", $"{tag}row_max_raw", x), zero);
        var lo = b.Op("Min", $"{tag}row_min", b.ReduceLast("ReduceMin", $"{tag}row_min_raw", x), zero);
        var s = b.Op("Max", $"{tag}row_scale", b.Op("Div", $"{tag}row_range", b.Op("Sub", $"{tag}row_span", hi, lo), top), b.Scalar($"{tag}min_scale", UniformQuantizer.MinScale));
        var z = b.Op("Clip", $"{tag}row_zero_point", b.Op("Round", $"{tag}row_zero_raw", b.Op("Div", $"{tag}row_zero_div", b.Op("Neg", $"{tag}row_min_neg", lo), s)), zero, top);
        var q = b.Op("Clip", $"{tag}codes", b.Op("Add", $"{tag}codes_raw", b.Op("Round", $"{tag}rounded", b.Op("Div", $"{tag}scaled", x, s)), z), zero, top);
        return b.Op("Mul", $"{tag}dequantized", b.Op("Sub", $"{tag}centred", q, z), s);
    }

    public override IReadOnlyDictionary<string, object> Describe() => new Dictionary<string, object> { ["dynamic"] = "scale and zero point per token row at run time" };

    public override Value EmitPortable(PortableBuilder b, QuantizationSite site) => Emit(b, site.Value, Bits);
}
