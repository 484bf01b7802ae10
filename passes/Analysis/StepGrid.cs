using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>The candidate steps of the step searches (PTQ4ViT/AOCQ activation steps, Liu et al.'s
/// interval search): multiples of the fitted step (applied through <see cref="IAdjustableStep"/>).</summary>
internal static class StepGrid
{
    /// <summary><paramref name="points"/> factors linearly spaced in [lower, upper], plus 1 (the fitted step), ascending.</summary>
    public static float[] Multipliers(float lower, float upper, int points, string what) =>
        points >= 2 && lower > 0 && upper > lower
            ? Enumerable.Range(0, points).Select(i => lower + (upper - lower) * i / (points - 1)).Append(1f).Distinct().Order().ToArray()
            : throw new OnnxViTQException($"{what}: need at least 2 points and 0 < lower < upper (got {points}, {lower}, {upper})");
}
