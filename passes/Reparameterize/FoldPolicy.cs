using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Reparameterize;

/// <summary>What a reparameterization policy sees of one LayerNorm group: per-channel statistics
/// of its output over the calibration data, the weights of the linear layers reading it (as
/// [K, N] with K the LayerNorm channels, all linears side by side), and the bit widths.</summary>
internal sealed record FoldInputs(float[] Min, float[] Max, double[] MeanSquare, float[][] Weights, int ActivationBits, int WeightBits, bool ShiftAllowed)
{
    public int Channels => Min.Length;
    public int Levels => (1 << ActivationBits) - 1;
}

/// <summary>A policy's answer: the per-channel map y' = (y − δ)/r folded into the LayerNorm and
/// its linears, and the per-tensor quantizer of y' that deployment uses.</summary>
internal sealed record FoldDecision(float[] Scale, float[] Shift, FittedQuantizer Quantizer, string Summary);

/// <summary>Chooses the channel scales and shifts of a LayerNorm reparameterization.</summary>
internal interface IFoldPolicy
{
    string Name { get; }
    FoldDecision Decide(FoldInputs inputs);
}

/// <summary>Helpers shared by the policies: the per-channel asymmetric grid and an estimate of
/// the output error a decision causes (used to choose among candidates).</summary>
internal static class FoldMath
{
    public const float Tiny = 1e-8f;

    /// <summary>Per-channel asymmetric quantizer of [min_c, max_c] at the activation bits:
    /// s_c = (max_c − min_c)/L, z_c = round(−min_c/s_c) (any integer).</summary>
    public static (float[] S, float[] Z) ChannelGrid(FoldInputs x)
    {
        var s = new float[x.Channels];
        var z = new float[x.Channels];
        for (int c = 0; c < x.Channels; c++)
        {
            s[c] = Math.Max((x.Max[c] - x.Min[c]) / x.Levels, Tiny);
            z[c] = MathF.Round(-x.Min[c] / s[c], MidpointRounding.ToEven);
        }
        return (s, z);
    }

    /// <summary>The per-tensor asymmetric quantizer covering every channel's mapped range
    /// [(min_c − δ_c)/r_c, (max_c − δ_c)/r_c].</summary>
    public static FittedQuantizer Covering(FoldInputs x, float[] r, float[] d)
    {
        float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
        for (int c = 0; c < x.Channels; c++)
        {
            lo = Math.Min(lo, (x.Min[c] - d[c]) / r[c]);
            hi = Math.Max(hi, (x.Max[c] - d[c]) / r[c]);
        }
        return IntegerGrids.AsymmetricFromRange(lo, hi, x.ActivationBits);
    }

    /// <summary>
    /// Estimated squared output error per token of the group's linears after folding (r, δ) and
    /// quantizing: activation rounding noise (step²/12 per channel, in original units r_c·s̃,
    /// propagated through ‖W_c‖²) plus weight quantization error of W' = diag(r)·W (per output
    /// channel symmetric at the weight bits, weighted by E[y'_c²]). Clipping is not modelled: the
    /// quantizer covers every mapped range.
    /// </summary>
    public static double OutputError(FoldInputs x, float[] r, float[] d, FittedQuantizer q)
    {
        double step = q.Grid().Scales[0];
        double error = 0;
        foreach (var w in x.Weights)
        {
            int k = x.Channels, n = w.Length / k;
            var scaled = new float[w.Length];
            for (int c = 0; c < k; c++)
                for (int j = 0; j < n; j++) scaled[c * n + j] = w[c * n + j] * r[c];
            var wq = IntegerGrids.Weight(scaled, [k, n], x.WeightBits, axis: 1, mse: false).Grid();
            var codes = wq.Codes!;
            for (int c = 0; c < k; c++)
            {
                double rowNorm = 0, rowError = 0;
                for (int j = 0; j < n; j++)
                {
                    double original = w[c * n + j];
                    rowNorm += original * original;
                    double e = scaled[c * n + j] - codes[c * n + j] * wq.Scales[j];
                    rowError += e * e;
                }
                double activationStep = r[c] * step;
                double mapped = MappedMeanSquare(x, c, r[c], d[c]);
                error += activationStep * activationStep / 12 * rowNorm + mapped * rowError;
            }
        }
        return error;
    }

    /// <summary>E[((y − δ)/r)²] from E[y²] and the channel's mid-range (E[y] is not kept).</summary>
    private static double MappedMeanSquare(FoldInputs x, int c, float r, float d)
    {
        double mid = (x.Min[c] + x.Max[c]) / 2.0;
        double variance = Math.Max(0, x.MeanSquare[c] - mid * mid);
        double centre = mid - d;
        return (variance + centre * centre) / ((double)r * r);
    }
}

/// <summary>
/// RepQ-ViT: quantize the post-LayerNorm activation per channel (s_c, z_c), then make it per
/// tensor: s̃ = mean(s), z̃ = round(mean(z)) (clamped to the code range), r_c = s_c/s̃,
/// δ_c = s_c(z̃ − z_c). Then (y − δ_c)/(r_c s̃) + z̃ = y/s_c + z_c: the per-tensor quantizer (s̃, z̃)
/// of y' reproduces the per-channel quantization of y exactly. Without shifts (zero padding on
/// the way) only the scales fold: r_c = m_c/mean(m) with m_c = max|y_c|, and the per-tensor
/// quantizer covers the mapped ranges.
/// </summary>
internal sealed class RepQPolicy : IFoldPolicy
{
    public string Name => "repq";

    public FoldDecision Decide(FoldInputs x)
    {
        int n = x.Channels;
        var r = new float[n];
        var d = new float[n];
        if (!x.ShiftAllowed)
        {
            var m = Enumerable.Range(0, n).Select(c => Math.Max(Math.Max(Math.Abs(x.Min[c]), Math.Abs(x.Max[c])), FoldMath.Tiny)).ToArray();
            float mean = m.Average();
            for (int c = 0; c < n; c++) r[c] = m[c] / mean;
            return new FoldDecision(r, d, FoldMath.Covering(x, r, d), "scales only (zero-padded)");
        }
        var (s, z) = FoldMath.ChannelGrid(x);
        float sMean = s.Average();
        float zMean = Math.Clamp(MathF.Round(z.Average(), MidpointRounding.ToEven), 0, x.Levels);
        for (int c = 0; c < n; c++)
        {
            r[c] = s[c] / sMean;
            d[c] = s[c] * (zMean - z[c]);
        }
        return new FoldDecision(r, d, IntegerGrids.Asymmetric(sMean, (int)zMean, x.ActivationBits), $"s̃={sMean:g4} z̃={zMean}");
    }
}

/// <summary>
/// DopQ-ViT's MAD-guided optimal scaling factor (MOSF), as we implement it (the paper's exact
/// procedure was not reachable; docs/METHODS-NOTES.md gives the derivation). RepQ-ViT's
/// s̃ = mean(s) is pulled up by the outlier channels, and its full reparameterization scales every
/// weight row by s_c/s̃, so the few outlier rows dominate each output channel's weight range. MOSF
/// flags outlier channels by their median absolute deviation (s_c &gt; median + κ·1.4826·MAD) and
/// chooses s̃ among quantiles of the other channels' scales; only channels wider than s̃ are
/// reparameterized (r_c = s_c/s̃ ≥ 1, all outliers among them), the rest keep their weights, and
/// every channel is centred (δ_c = its mid-range). The candidate — RepQ's decision included —
/// with the least estimated output error (<see cref="FoldMath.OutputError"/>) wins; no extra
/// inference cost, as with RepQ.
/// </summary>
internal sealed class MosfPolicy(double kappa = 3) : IFoldPolicy
{
    public string Name => "mosf";
    private static readonly double[] Quantiles = [0.5, 0.75, 0.9, 0.95, 1.0];

    public FoldDecision Decide(FoldInputs x)
    {
        int n = x.Channels;
        // Width per channel: the asymmetric step with shifts, the symmetric half-range without.
        var width = Enumerable.Range(0, n).Select(c => x.ShiftAllowed
            ? Math.Max(x.Max[c] - x.Min[c], FoldMath.Tiny)
            : Math.Max(Math.Max(Math.Abs(x.Min[c]), Math.Abs(x.Max[c])), FoldMath.Tiny)).ToArray();
        double median = Median(width);
        double mad = Median(width.Select(w => Math.Abs(w - median)).ToArray());
        double threshold = median + kappa * 1.4826 * mad;
        var inliers = width.Where(w => w <= threshold).Order().ToArray();
        int outliers = n - inliers.Length;

        var repq = new RepQPolicy().Decide(x);
        var best = (Decision: repq with { Summary = $"RepQ's full reparameterization ({outliers} MAD outlier channels)" }, Error: FoldMath.OutputError(x, repq.Scale, repq.Shift, repq.Quantizer));
        foreach (double q in Quantiles)
        {
            float target = inliers.Length == 0 ? (float)median : inliers[Math.Min(inliers.Length - 1, (int)Math.Round(q * (inliers.Length - 1)))];
            var r = new float[n];
            var d = new float[n];
            for (int c = 0; c < n; c++)
            {
                r[c] = Math.Max(1f, width[c] / target);
                if (x.ShiftAllowed) d[c] = (x.Min[c] + x.Max[c]) / 2;
            }
            var quantizer = FoldMath.Covering(x, r, d);
            double error = FoldMath.OutputError(x, r, d, quantizer);
            if (error < best.Error)
                best = (new FoldDecision(r, d, quantizer, $"s̃ at the {q:P0} quantile of {inliers.Length} inlier channels, {r.Count(v => v > 1)} reparameterized ({outliers} MAD outliers)"), error);
        }
        return best.Decision;
    }

    private static double Median(IReadOnlyList<float> v) => Median(v.Select(x => (double)x).ToArray());

    private static double Median(double[] v)
    {
        var s = v.Order().ToArray();
        return s.Length == 0 ? 0 : s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}

/// <summary>
/// AOCQ's equivalent channel-balancing operator, as we implement it: every channel is centred
/// (δ_c = its mid-range, when shifts fold exactly) and balanced between activation and weights,
/// r_c = a_c^α / w_c^(1−α) (a_c: the channel's half-range, w_c: max |W[c, :]| over the linears),
/// normalised to geometric mean 1 — activations lose their outlier channels, weights absorb part
/// of them. The migration strength α ∈ {0.2 … 0.8} with the least estimated output error wins.
/// </summary>
internal sealed class BalancePolicy : IFoldPolicy
{
    public string Name => "balance";
    private static readonly float[] Alphas = [0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f];

    public FoldDecision Decide(FoldInputs x)
    {
        int n = x.Channels;
        var d = new float[n];
        var a = new float[n];
        var w = new float[n];
        for (int c = 0; c < n; c++)
        {
            if (x.ShiftAllowed) d[c] = (x.Min[c] + x.Max[c]) / 2;
            a[c] = Math.Max(Math.Max(Math.Abs(x.Min[c] - d[c]), Math.Abs(x.Max[c] - d[c])), FoldMath.Tiny);
            foreach (var weights in x.Weights)
            {
                int outputs = weights.Length / n;
                for (int j = 0; j < outputs; j++) w[c] = Math.Max(w[c], Math.Abs(weights[c * outputs + j]));
            }
            w[c] = Math.Max(w[c], FoldMath.Tiny);
        }
        (FoldDecision Decision, double Error)? best = null;
        foreach (float alpha in Alphas)
        {
            var r = new float[n];
            double logMean = 0;
            for (int c = 0; c < n; c++)
            {
                r[c] = MathF.Pow(a[c], alpha) / MathF.Pow(w[c], 1 - alpha);
                logMean += Math.Log(r[c]);
            }
            float norm = (float)Math.Exp(logMean / n);
            for (int c = 0; c < n; c++) r[c] = Math.Max(r[c] / norm, FoldMath.Tiny);
            var q = FoldMath.Covering(x, r, d);
            double error = FoldMath.OutputError(x, r, d, q);
            if (best is null || error < best.Value.Error) best = (new FoldDecision(r, d, q, $"α={alpha}{(x.ShiftAllowed ? "" : ", scales only (zero-padded)")}"), error);
        }
        return best!.Value.Decision;
    }
}
