namespace OnnxViTQ.Quantization;

/// <summary>
/// Affine integer grids (<see cref="IIntegerGrid"/>) built from numbers a pass derived — a
/// reparameterization's per-tensor scale and zero point, a candidate weight grid it scores — so
/// that passes build grids without naming the quantizer class behind them. Each result is a
/// fitted quantizer that is an <see cref="IIntegerGrid"/>.
/// </summary>
internal static class IntegerGrids
{
    /// <summary>The per-tensor asymmetric grid covering [min, max] (widened to include 0).</summary>
    public static FittedQuantizer AsymmetricFromRange(float min, float max, int bits) => UniformQuantizer.AsymmetricFromRange(min, max, bits);

    /// <summary>The per-tensor asymmetric grid with this scale and zero point (clamped to the codes).</summary>
    public static FittedQuantizer Asymmetric(float scale, int zeroPoint, int bits) => UniformQuantizer.Asymmetric(scale, zeroPoint, bits);

    /// <summary>A symmetric weight grid per channel along <paramref name="axis"/> (per tensor when
    /// null) with the weight's codes; <paramref name="mse"/> clips each channel for the least squared error.</summary>
    public static FittedQuantizer Weight(float[] w, long[] shape, int bits, int? axis, bool mse) => UniformQuantizer.FitWeight(w, shape, bits, axis, mse);

    /// <summary>The grid view of a quantizer this class built.</summary>
    public static IIntegerGrid Grid(this FittedQuantizer q) =>
        q as IIntegerGrid ?? throw new InvalidOperationException($"{q} is not an integer grid");
}
