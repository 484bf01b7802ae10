using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>The candidate steps of the step searches (PTQ4ViT/AOCQ activation steps, Liu et al.'s
/// interval search): multiples of the fitted step, and the fitted quantizer rescaled by one.</summary>
internal static class StepGrid
{
    /// <summary><paramref name="points"/> factors linearly spaced in [lower, upper], plus 1 (the fitted step), ascending.</summary>
    public static float[] Multipliers(float lower, float upper, int points, string what) =>
        points >= 2 && lower > 0 && upper > lower
            ? Enumerable.Range(0, points).Select(i => lower + (upper - lower) * i / (points - 1)).Append(1f).Distinct().Order().ToArray()
            : throw new OnnxViTQException($"{what}: need at least 2 points and 0 < lower < upper (got {points}, {lower}, {upper})");

    /// <summary>A per-tensor activation quantizer with its step scaled by <paramref name="m"/>
    /// (its representable interval scaled about zero); <paramref name="m"/> = 1 gives <paramref name="q"/> itself.</summary>
    public static UniformQuantizer ScaledActivation(UniformQuantizer q, float m)
    {
        if (m == 1f) return q;
        if (q.Symmetric) return UniformQuantizer.SymmetricFromMaxAbs([q.Scales[0] * q.QMax * m], q.Bits, null);
        float lo = (q.QMin - q.ZeroPoints[0]) * q.Scales[0], hi = (q.QMax - q.ZeroPoints[0]) * q.Scales[0];
        return UniformQuantizer.AsymmetricFromRange(lo * m, hi * m, q.Bits);
    }
}
