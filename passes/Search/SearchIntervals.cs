using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Search;

/// <summary>
/// Liu et al. 2021's interval search for linear layers: for each quantized activation whose uses
/// are all MatMul/Gemm with quantized weights, alternately re-choose every weight's step (all
/// channels scaled together) and then the activation's step, each over <c>candidates</c> values
/// linearly spaced in [α·Δ₀, β·Δ₀] (Δ₀: the fitted step), keeping the one with the highest mean
/// Pearson similarity between FP32 and quantized layer outputs (<see cref="SimilarityObjective"/>)
/// on the calibration rows; up to <c>rounds</c> rounds, stopping at the first round that improves
/// nothing. Products run on <see cref="Gemm"/> over at most <see cref="MaxRows"/> cached rows.
/// The attention products (Q·Kᵀ with the ranking loss, softmax·V) are not searched yet.
/// </summary>
internal sealed class SearchIntervals(int rounds = 20, int candidates = 20, float alpha = 0.5f, float beta = 1.2f, bool measureBefore = false) : IPass, IPassContract
{
    public const int MaxRows = 256;

    public string Name => "search-intervals";
    public IReadOnlyList<Type> Requires => [typeof(QuantizersFitted), typeof(ActivationStatistics)];
    public IReadOnlyList<Type> Produces => [];

    public IReadOnlyList<float> Multipliers { get; } = StepGrid.Multipliers(alpha, beta, candidates, "interval search (candidates, alpha, beta)");

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var stats = context.Get<ActivationStatistics>();
        if (measureBefore && !context.TryGet<LayerOutputErrorsBefore>(out _))
            context.Set(new LayerOutputErrorsBefore(LayerOutputErrors.Measure(plan, stats)));
        int searched = 0, roundsRun = 0;
        double gain = 0;
        var sites = plan.Activations.ToList();
        for (int s = 0; s < sites.Count; s++)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            context.Progress?.Report(new ProgressReport("interval search", s, sites.Count, "activations"));
            var site = plan.For(sites[s].Value);
            if (site.Parameters is not UniformQuantizer { Axis: null } aq || !stats.Has(site.Value, ObserverKeys.Rows)) continue;
            var layers = site.Uses.Select(u => u.InputIndex == 0 ? WeightedLinear.Of(u.Node, plan) : null).ToList();
            if (layers.Count == 0 || layers.Any(l => l is null || l.Weight.Parameters is not UniformQuantizer { Symmetric: true } || l.Weight.Uses.Count != 1)) continue;
            var rows = stats.Get<RowSampleObserver>(site.Value, ObserverKeys.Rows);
            if (rows.Count == 0 || layers.Any(l => l!.K != rows.Width)) continue;
            var result = Search(site, aq, layers!, rows);
            searched++;
            roundsRun += result.Rounds;
            gain += result.Gain;
            if (result.Activation is { } newActivation)
                plan.Update(site.WithNote($"interval search: activation step ×{result.ActivationMultiplier:0.###}") with { Parameters = newActivation });
            foreach (var (layer, q, m) in result.Weights)
                plan.Update(plan.For(layer.Weight.Value).WithNote($"interval search: weight steps ×{m:0.###} ({layer.Node.Name})") with { Parameters = q });
        }
        context.Progress?.Report(new ProgressReport("interval search", sites.Count, sites.Count, "activations"));
        context.Info($"interval search: {searched} activation(s) with their linear layers, {roundsRun} round(s), mean Pearson gain {(searched == 0 ? 0 : gain / searched):0.#####}");
        return PassResult.Unchanged;
    }

    private sealed record Outcome(UniformQuantizer? Activation, float ActivationMultiplier, List<(WeightedLinear Layer, UniformQuantizer Q, float M)> Weights, int Rounds, double Gain);

    private Outcome Search(QuantizationSite site, UniformQuantizer aq0, IReadOnlyList<WeightedLinear> layers, RowSampleObserver rows)
    {
        int count = Math.Min(rows.Count, MaxRows);
        var x = rows.Rows[..(count * rows.Width)].ToArray();
        long[] shape = [count, rows.Width];
        var references = layers.Select(l => l.Multiply(x, count, l.W)).ToArray();
        var weightQ = layers.Select(l => (UniformQuantizer)l.Weight.Parameters!).ToArray();
        var weightM = layers.Select(_ => 1f).ToArray();
        var weightDq = layers.Select((l, i) => l.Simulated(weightQ[i])).ToArray();
        var activationQ = aq0;
        float activationM = 1f;
        var xq = Quantized(x, shape, activationQ);

        double Score(int i, float[] xqs, float[] wdq) => SimilarityObjective.MeanPearson(references[i], layers[i].Multiply(xqs, count, wdq), count, layers[i].N);
        var scores = layers.Select((_, i) => Score(i, xq, weightDq[i])).ToArray();
        double start = scores.Sum();
        int round = 0;
        bool changedAny = false;
        while (round < rounds)
        {
            round++;
            bool improved = false;
            for (int i = 0; i < layers.Count; i++)
                foreach (float m in Multipliers)
                {
                    if (m == weightM[i]) continue;
                    var candidate = ScaledWeight((UniformQuantizer)layers[i].Weight.Parameters!, layers[i], m);
                    var dq = layers[i].Simulated(candidate);
                    double score = Score(i, xq, dq);
                    if (score > scores[i] + 1e-12)
                    {
                        (weightQ[i], weightM[i], weightDq[i], scores[i]) = (candidate, m, dq, score);
                        improved = true;
                    }
                }
            foreach (float m in Multipliers)
            {
                if (m == activationM) continue;
                var candidate = StepGrid.ScaledActivation(aq0, m);
                var cxq = Quantized(x, shape, candidate);
                var candidateScores = layers.Select((_, i) => Score(i, cxq, weightDq[i])).ToArray();
                if (candidateScores.Sum() > scores.Sum() + 1e-12)
                {
                    (activationQ, activationM, xq, scores) = (candidate, m, cxq, candidateScores);
                    improved = true;
                }
            }
            changedAny |= improved;
            if (!improved) break;
        }
        var weights = Enumerable.Range(0, layers.Count).Where(i => weightM[i] != 1f).Select(i => (layers[i], weightQ[i], weightM[i])).ToList();
        return new Outcome(activationM != 1f ? activationQ : null, activationM, weights, round, (scores.Sum() - start) / layers.Count);
    }

    private static float[] Quantized(float[] x, long[] shape, FittedQuantizer q)
    {
        var xq = (float[])x.Clone();
        q.Simulate(xq, shape);
        return xq;
    }

    /// <summary>The fitted weight quantizer with every channel's step scaled by <paramref name="m"/>, codes re-rounded.</summary>
    internal static UniformQuantizer ScaledWeight(UniformQuantizer q, WeightedLinear layer, float m)
    {
        var maxAbs = q.Scales.Select(s => s * q.QMax * m).ToArray();
        var scaled = UniformQuantizer.SymmetricFromMaxAbs(maxAbs, q.Bits, q.Axis);
        return scaled.WithCodes(scaled.QuantizeAll(layer.W, layer.Shape));
    }
}
