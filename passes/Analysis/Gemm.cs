using System.Numerics.Tensors;

namespace OnnxViTQ.Passes;

/// <summary>Dense products for compile-time searches and error measurements, on
/// System.Numerics.Tensors dot products (one output element per dot, rows in parallel; each
/// element is summed in one fixed order, so results do not depend on the thread count).</summary>
internal static class Gemm
{
    /// <summary>[rows, k] · [k, n] → [rows, n].</summary>
    public static float[] Multiply(float[] a, int rows, int k, float[] b, int n)
    {
        var bt = new float[b.Length];
        for (int i = 0; i < k; i++)
            for (int j = 0; j < n; j++) bt[j * k + i] = b[i * n + j];
        return MultiplyTransposed(a, rows, k, bt, n);
    }

    /// <summary>[rows, k] · [n, k]ᵀ → [rows, n] (the second operand stored one output per row, as Gemm with transB = 1 has it).</summary>
    public static float[] MultiplyTransposed(float[] a, int rows, int k, float[] bt, int n)
    {
        var c = new float[rows * n];
        Parallel.For(0, rows, r =>
        {
            var row = a.AsSpan(r * k, k);
            for (int j = 0; j < n; j++) c[r * n + j] = TensorPrimitives.Dot(row, bt.AsSpan(j * k, k));
        });
        return c;
    }
}
