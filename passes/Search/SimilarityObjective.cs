namespace OnnxViTQ.Passes.Search;

/// <summary>
/// Liu et al. 2021's interval-search objective (METHODS.md): the Pearson correlation between the
/// FP32 and the quantized output, averaged over groups of it (the whole output of a linear layer
/// is one group, each attention head's map one), minus γ·ranking loss on attention maps. Higher is
/// better; 1 for a quantized group that is an exact affine image of the FP32 one.
/// </summary>
internal static class SimilarityObjective
{
    /// <summary>(1/R)·Σ_r Pearson(y_r, ŷ_r) over the <paramref name="rows"/> consecutive groups of
    /// <paramref name="n"/> values. A constant group correlates 1 with an equal group and 0 otherwise.</summary>
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

    /// <summary>
    /// The ranking loss with θ = 0 averaged over output rows, each row's loss taken over the
    /// index pairs <paramref name="pairs"/> and divided by their number and by the FP32 row's
    /// standard deviation, so it is free of the scores' scale (a row shifted or scaled by a
    /// positive factor scores the same; a constant FP32 row contributes 0).
    /// </summary>
    public static double MeanRankingLoss(ReadOnlySpan<float> y, ReadOnlySpan<float> yq, int rows, int n, IReadOnlyList<(int P, int Q)> pairs)
    {
        if (rows == 0 || pairs.Count == 0) return 0;
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            var a = y.Slice(r * n, n);
            var aq = yq.Slice(r * n, n);
            double sigma = StandardDeviation(a);
            if (sigma == 0) continue;
            double loss = 0;
            foreach (var (p, q) in pairs)
            {
                int sign = Math.Sign(a[p] - a[q]);
                if (sign != 0) loss += Math.Max(0, -(aq[p] - aq[q]) * sign);
            }
            total += loss / (pairs.Count * sigma);
        }
        return total / rows;
    }

    /// <summary>The search objective: <see cref="MeanPearson"/> − γ·<see cref="MeanRankingLoss"/>
    /// (no ranking term when <paramref name="pairs"/> is null: outputs that are not attention scores).</summary>
    public static double Score(ReadOnlySpan<float> y, ReadOnlySpan<float> yq, int rows, int n, double gamma, IReadOnlyList<(int P, int Q)>? pairs) =>
        MeanPearson(y, yq, rows, n) - (pairs is null || gamma == 0 ? 0 : gamma * MeanRankingLoss(y, yq, rows, n, pairs));

    /// <summary>The index pairs p &lt; q of a row of width <paramref name="n"/> the ranking loss is
    /// taken over: all of them when there are at most <paramref name="max"/>, else a fixed
    /// pseudo-random sample of <paramref name="max"/> (the loss is O(pairs) per row).</summary>
    public static IReadOnlyList<(int P, int Q)> RankingPairs(int n, int max, int seed = 29)
    {
        long all = (long)n * (n - 1) / 2;
        if (all <= max)
        {
            var every = new List<(int, int)>((int)all);
            for (int p = 0; p < n; p++)
                for (int q = p + 1; q < n; q++) every.Add((p, q));
            return every;
        }
        var random = new Random(seed);
        var sample = new (int, int)[max];
        for (int i = 0; i < max; i++)
        {
            int p = random.Next(n), q = random.Next(n - 1);
            if (q >= p) q++;
            sample[i] = p < q ? (p, q) : (q, p);
        }
        return sample;
    }

    private static double StandardDeviation(ReadOnlySpan<float> a)
    {
        double mean = 0;
        foreach (float v in a) mean += v;
        mean /= a.Length;
        double s = 0;
        foreach (float v in a) s += (v - mean) * (v - mean);
        return Math.Sqrt(s / a.Length);
    }
}
