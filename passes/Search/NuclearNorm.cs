namespace OnnxViTQ.Passes.Search;

/// <summary>Nuclear norm (sum of singular values) of a dense matrix: the square roots of the
/// eigenvalues of its smaller Gram matrix, found by cyclic Jacobi rotations (exact up to
/// rounding; the matrices here are at most a few hundred wide).</summary>
internal static class NuclearNorm
{
    public static double Of(ReadOnlySpan<float> a, int rows, int cols)
    {
        int k = Math.Min(rows, cols);
        if (k == 0) return 0;
        var g = new double[k, k];
        bool byColumns = cols <= rows; // Gram of the narrower side: AᵀA (cols×cols) or AAᵀ (rows×rows)
        for (int i = 0; i < k; i++)
            for (int j = i; j < k; j++)
            {
                double s = 0;
                if (byColumns) for (int r = 0; r < rows; r++) s += (double)a[r * cols + i] * a[r * cols + j];
                else for (int c = 0; c < cols; c++) s += (double)a[i * cols + c] * a[j * cols + c];
                g[i, j] = g[j, i] = s;
            }
        return Eigenvalues(g).Sum(l => Math.Sqrt(Math.Max(0, l)));
    }

    /// <summary>Eigenvalues of a symmetric matrix (destroyed) by cyclic Jacobi sweeps.</summary>
    internal static double[] Eigenvalues(double[,] m)
    {
        int n = m.GetLength(0);
        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0, diag = 0;
            for (int i = 0; i < n; i++)
            {
                diag += m[i, i] * m[i, i];
                for (int j = i + 1; j < n; j++) off += m[i, j] * m[i, j];
            }
            if (off <= 1e-22 * Math.Max(diag, 1e-300)) break;
            for (int p = 0; p < n - 1; p++)
                for (int q = p + 1; q < n; q++)
                {
                    if (m[p, q] == 0) continue;
                    double theta = (m[q, q] - m[p, p]) / (2 * m[p, q]);
                    double t = Math.Sign(theta == 0 ? 1 : theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
                    for (int r = 0; r < n; r++)
                    {
                        double mrp = m[r, p], mrq = m[r, q];
                        m[r, p] = c * mrp - s * mrq;
                        m[r, q] = s * mrp + c * mrq;
                    }
                    for (int r = 0; r < n; r++)
                    {
                        double mpr = m[p, r], mqr = m[q, r];
                        m[p, r] = c * mpr - s * mqr;
                        m[q, r] = s * mpr + c * mqr;
                    }
                }
        }
        return Enumerable.Range(0, n).Select(i => m[i, i]).ToArray();
    }
}
