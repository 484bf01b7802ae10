namespace OnnxViTQ.Evaluation;

/// <summary>How closely two models' logits agree on the same samples (a lowered model against
/// the portable model of the same plan): largest absolute difference, cosine similarity (worst
/// and mean over samples) and top-1 agreement.</summary>
internal sealed record LogitAgreement(int Samples, double MaxAbs, double MinCosine, double MeanCosine, double Top1Agreement)
{
    public static LogitAgreement Compare(IReadOnlyList<float[]> reference, IReadOnlyList<float[]> other)
    {
        if (reference.Count != other.Count || reference.Count == 0)
            throw new ArgumentException($"cannot compare {reference.Count} against {other.Count} samples");
        double maxAbs = 0, minCos = 1, sumCos = 0;
        int same = 0;
        for (int i = 0; i < reference.Count; i++)
        {
            var a = reference[i];
            var b = other[i];
            if (a.Length != b.Length) throw new ArgumentException($"sample {i}: {a.Length} against {b.Length} logits");
            double dot = 0, na = 0, nb = 0;
            for (int c = 0; c < a.Length; c++)
            {
                maxAbs = Math.Max(maxAbs, Math.Abs(a[c] - b[c]));
                dot += (double)a[c] * b[c];
                na += (double)a[c] * a[c];
                nb += (double)b[c] * b[c];
            }
            double cos = na == 0 && nb == 0 ? 1 : dot / Math.Sqrt(na * nb);
            minCos = Math.Min(minCos, cos);
            sumCos += cos;
            if (ArgMax(a) == ArgMax(b)) same++;
        }
        return new LogitAgreement(reference.Count, maxAbs, minCos, sumCos / reference.Count, (double)same / reference.Count);
    }

    private static int ArgMax(float[] row)
    {
        int best = 0;
        for (int c = 1; c < row.Length; c++) if (row[c] > row[best]) best = c;
        return best;
    }

    public override string ToString() =>
        $"{Samples} samples: max |Δlogit| {MaxAbs:g3}, cosine min {MinCosine:0.######} mean {MeanCosine:0.#######}, top-1 agreement {Top1Agreement:P2}";
}
