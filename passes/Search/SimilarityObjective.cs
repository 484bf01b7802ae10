namespace OnnxViTQ.Passes.Search;

/// <summary>
/// Liu et al. 2021's interval-search objective (METHODS.md): the mean over output rows of the
/// Pearson correlation between the FP32 and the quantized row, minus γ·ranking loss on attention
/// maps. Higher is better; 1 for a quantized output that is an exact affine image of the FP32 one.
/// </summary>
internal static class SimilarityObjective
{
    /// <summary>(1/R)·Σ_r Pearson(y_r, ŷ_r) over the <paramref name="rows"/> rows of width
    /// <paramref name="n"/>. A constant row correlates 1 with an equal row and 0 otherwise.</summary>
    public static double MeanPearson(ReadOnlySpan<float> y, ReadOnlySpan<float> yq, int rows, int n)
    {
        double total = 0;
        for (int r = 0; r < rows; r++) total += Pearson(y.Slice(r * n, n), yq.Slice(r * n, n));
        return rows == 0 ? 1 : total / rows;
    }

    public static double Pearson(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double ma = 0, mb = 0;
        for (int i = 0; i < a.Length; i++) { ma += a[i]; mb += b[i]; }
        ma /= a.Length;
        mb /= a.Length;
        double sab = 0, saa = 0, sbb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double da = a[i] - ma, db = b[i] - mb;
            sab += da * db;
            saa += da * da;
            sbb += db * db;
        }
        if (saa == 0 || sbb == 0) return a.SequenceEqual(b) ? 1 : 0;
        return sab / Math.Sqrt(saa * sbb);
    }

    /// <summary>
    /// Pairwise ranking loss of one attention row: Σ_{p&lt;q} max(0, θ − (â_p − â_q)·sign(a_p − a_q)),
    /// over pairs whose FP32 values differ. Zero when the quantized row keeps every order with a
    /// margin of at least θ (θ = 0: whenever it never reverses an order).
    /// </summary>
    public static double RankingLoss(ReadOnlySpan<float> a, ReadOnlySpan<float> aq, double theta)
    {
        double loss = 0;
        for (int p = 0; p < a.Length; p++)
            for (int q = p + 1; q < a.Length; q++)
            {
                int sign = Math.Sign(a[p] - a[q]);
                if (sign == 0) continue;
                loss += Math.Max(0, theta - (aq[p] - aq[q]) * sign);
            }
        return loss;
    }
}
