using System.Numerics.Tensors;
using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Analysis;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Reparameterize;

/// <summary>
/// AOCQ's extra activation-step stage: once the weights are quantized, the step of each uniform
/// per-tensor activation feeding linear layers is re-chosen for the layers' output, not the
/// activation itself: the range [lo, hi] is scaled by m ∈ [0.5, 1.2] (15 candidates) and the m
/// minimising ‖Q(X)·Ŵ − X·W‖² over the site's sample of calibration rows is kept (Ŵ: the
/// dequantized weights). Clipping a little more than min/max usually pays at low bit widths.
/// </summary>
public sealed class OptimizeActivationSteps : IPass, IPassContract
{
    public string Name => "optimize-activation-steps";
    public IReadOnlyList<Type> Requires => [typeof(QuantizersFitted), typeof(ActivationStatistics)];
    public IReadOnlyList<Type> Produces => [];

    public static readonly float[] Multipliers = Enumerable.Range(0, 15).Select(i => 0.5f + 0.05f * i).ToArray();

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var stats = context.Get<ActivationStatistics>();
        int changed = 0, considered = 0;
        foreach (var site in plan.Activations.ToList())
        {
            if (site.Parameters is not UniformQuantizer { Axis: null, Symmetric: false } q) continue;
            if (!site.Uses.All(u => u.InputIndex == 0 && ViTPatterns.IsLinear(u.Node) && u.Node.GetInt("transA", 0) == 0)) continue;
            if (!stats.Has(site.Value, ObserverKeys.Rows)) continue;
            var rows = stats.Get<RowSampleObserver>(site.Value, ObserverKeys.Rows);
            if (rows.Count == 0) continue;
            var weights = site.Uses.Select(u => Weights(u.Node, plan)).ToList();
            if (weights.Any(w => w is null || w.Value.K != rows.Width)) continue;
            considered++;
            var x = rows.Copy();
            var references = weights.Select(w => Gemm.Multiply(x, rows.Count, w!.Value.K, w.Value.Float, w.Value.N)).ToList();
            float lo = (0 - q.ZeroPoints[0]) * q.Scales[0], hi = (q.QMax - q.ZeroPoints[0]) * q.Scales[0];
            (UniformQuantizer Q, double Error, float M)? best = null;
            foreach (float m in Multipliers)
            {
                var candidate = UniformQuantizer.AsymmetricFromRange(lo * m, hi * m, q.Bits);
                var xq = (float[])x.Clone();
                candidate.Simulate(xq, rows.Shape);
                double error = 0;
                for (int i = 0; i < weights.Count; i++)
                {
                    var y = Gemm.Multiply(xq, rows.Count, weights[i]!.Value.K, weights[i]!.Value.Dequantized, weights[i]!.Value.N);
                    error += SquaredDistance(y, references[i]);
                }
                if (best is null || error < best.Value.Error) best = (candidate, error, m);
            }
            if (best!.Value.M != 1f)
            {
                plan.Update(site.WithNote($"activation step: range scaled by {best.Value.M:0.00} for the least output error") with { Parameters = best.Value.Q });
                changed++;
            }
        }
        context.Info($"activation steps: {changed} of {considered} linear inputs re-chosen");
        return PassResult.Unchanged;
    }

    private static double SquaredDistance(float[] a, float[] b)
    {
        double e = 0;
        for (int i = 0; i < a.Length; i++) { double d = a[i] - b[i]; e += d * d; }
        return e;
    }

    /// <summary>The linear's weight as [K, N], in float and dequantized; null unless fitted uniform.</summary>
    private static (float[] Float, float[] Dequantized, int K, int N)? Weights(Node linear, QuantizationPlan plan)
    {
        var wv = linear.Inputs[1]!;
        if (!Constants.TryGetTensor(wv, out var t) || t.Rank != 2) return null;
        if (!plan.TryGet(wv, out var site) || site.Parameters is not UniformQuantizer wq) return null;
        var w = t.ToFloats();
        var dq = (float[])w.Clone();
        wq.Simulate(dq, t.Dims.ToArray());
        int rows = (int)t.Dims[0], cols = (int)t.Dims[1];
        if (linear.OpType == "Gemm" && linear.GetInt("transB", 0) == 1)
            return (Transpose(w, rows, cols), Transpose(dq, rows, cols), cols, rows);
        return (w, dq, rows, cols);
    }

    private static float[] Transpose(float[] a, int rows, int cols)
    {
        var t = new float[a.Length];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
        return t;
    }
}

/// <summary>Dense products for compile-time searches, on System.Numerics.Tensors dot products.</summary>
public static class Gemm
{
    /// <summary>[rows, k] · [k, n] → [rows, n].</summary>
    public static float[] Multiply(float[] a, int rows, int k, float[] b, int n)
    {
        var bt = new float[b.Length];
        for (int i = 0; i < k; i++)
            for (int j = 0; j < n; j++) bt[j * k + i] = b[i * n + j];
        var c = new float[rows * n];
        Parallel.For(0, rows, r =>
        {
            var row = a.AsSpan(r * k, k);
            for (int j = 0; j < n; j++) c[r * n + j] = TensorPrimitives.Dot(row, bt.AsSpan(j * k, k));
        });
        return c;
    }
}
