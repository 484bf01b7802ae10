using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Analysis;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Reparameterize;

/// <summary>
/// Output-driven step search for the per-tensor activations feeding linear layers whose step can
/// be moved (<see cref="IAdjustableStep"/>: uniform grids), once
/// the weights are quantized: the range [lo, hi] is scaled by m on a grid of <c>points</c> values in
/// [<c>lower</c>, <c>upper</c>] and the m minimising ‖Q(X)·Ŵ − X·W‖² over (up to 256 of) the site's
/// sampled calibration rows is kept (Ŵ: the dequantized weights). Because the error is measured
/// after the weights, a channel whose weights are small costs little when clipped — what lets a
/// per-tensor quantizer survive the outlier channels of post-LayerNorm activations.
/// AOCQ's extra activation-step stage uses [0.5, 1.2] × 15; PTQ4ViT's scale search uses a
/// 100-point grid up to 1.2 (its Hessian-weighted error needs the task loss's gradients, which a
/// model file does not have: here the layer output's squared error stands in).
/// </summary>
internal sealed class OptimizeActivationSteps(float lower = 0.5f, float upper = 1.2f, int points = 15) : IPass
{
    public const int MaxRows = 256;
    public string Name => "optimize-activation-steps";
    public PassContract Contract { get; } = new([Stages.Fitted, Stages.Statistics], [], [Stages.LinearsLowered, Stages.PortableEmitted]);

    public IReadOnlyList<float> Multipliers { get; } = StepGrid.Multipliers(lower, upper, points, "activation step grid");

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var stats = context.Get<ActivationStatistics>();
        int changed = 0, considered = 0;
        foreach (var site in plan.Activations.ToList())
        {
            // A per-tensor quantizer whose step a search may move.
            if (site.Parameters is not { Granularity: Granularity.PerTensor } q || q is not IAdjustableStep step) continue;
            if (!site.Uses.All(u => u.InputIndex == 0 && ViTPatterns.IsLinear(u.Node) && u.Node.GetInt("transA", 0) == 0)) continue;
            if (!stats.Has(site.Value, ObserverKeys.Rows)) continue;
            var rows = stats.Get<RowSampleObserver>(site.Value, ObserverKeys.Rows);
            if (rows.Count == 0) continue;
            var weights = site.Uses.Select(u => Weights(u.Node, plan)).ToList();
            if (weights.Any(w => w is null || w.Value.K != rows.Width)) continue;
            considered++;
            int count = Math.Min(rows.Count, MaxRows);
            var x = rows.Rows[..(count * rows.Width)].ToArray();
            long[] shape = [count, rows.Width];
            var references = weights.Select(w => Gemm.Multiply(x, count, w!.Value.K, w.Value.Float, w.Value.N)).ToList();
            (FittedQuantizer Q, double Error, float M)? best = null;
            foreach (float m in Multipliers)
            {
                var candidate = step.WithStepScaled(m);
                var xq = (float[])x.Clone();
                candidate.Simulate(xq, shape);
                double error = 0;
                for (int i = 0; i < weights.Count; i++)
                {
                    var y = Gemm.Multiply(xq, count, weights[i]!.Value.K, weights[i]!.Value.Dequantized, weights[i]!.Value.N);
                    error += SquaredDistance(y, references[i]);
                }
                if (best is null || error < best.Value.Error) best = (candidate, error, m);
            }
            if (best!.Value.M != 1f)
            {
                plan.Update(site.WithNote($"activation step: range scaled by {best.Value.M:0.###} for the least output error") with { Parameters = best.Value.Q });
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

    /// <summary>The linear's weight as [K, N], in float and dequantized; null unless fitted.</summary>
    private static (float[] Float, float[] Dequantized, int K, int N)? Weights(Node linear, QuantizationPlan plan)
    {
        var wv = linear.Inputs[1]!;
        if (!Constants.TryGetTensor(wv, out var t) || t.Rank != 2) return null;
        if (!plan.TryGet(wv, out var site) || site.Parameters is not { } wq) return null;
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
