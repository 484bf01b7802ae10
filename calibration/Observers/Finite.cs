using System.Numerics.Tensors;

namespace OnnxViTQ.Observers;

/// <summary>NaN and ±∞ have no quantized form and would poison ranges (a histogram grows forever
/// towards +∞); they are rejected with the name of the tensor.</summary>
internal static class Finite
{
    public static void Check(ReadOnlySpan<float> values, string tensor)
    {
        if (values.IsEmpty) return;
        // One vectorised pass: a sum is finite unless some element is NaN or ±∞ (or the sum
        // overflows, which the scan below tells apart).
        if (float.IsFinite(TensorPrimitives.Sum(values))) return;
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                throw new OnnxViTQException($"tensor '{tensor}' contains {Describe(values[i])} at element {i}; check the input data and preprocessing");
    }

    private static string Describe(float x) => float.IsNaN(x) ? "NaN" : x > 0 ? "+∞" : "−∞";
}
