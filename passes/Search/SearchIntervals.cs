using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Search;

/// <summary>Which attention products the interval search covers. Measured at W4A4 on the
/// reference models (BENCHMARKS.md), searching Q·Kᵀ did not lower the accuracy drop — it is within
/// noise, on average slightly worse — so it is not the default; searching softmax·V's operands
/// clipped the large attention probabilities and cost up to 1.3 pt.</summary>
internal enum ProductSearch
{
    /// <summary>Linear layers only (the default).</summary>
    None,

    /// <summary>Also the products whose output feeds a Softmax (Q·Kᵀ), compared as attention
    /// maps, with the ranking loss.</summary>
    AttentionScores,

    /// <summary>Also every other MatMul of two quantized activations (softmax·V).</summary>
    All,
}

/// <summary>
/// Liu et al. 2021's interval search. Linear layers: for each quantized activation whose uses are
/// all MatMul/Gemm with quantized weights, alternately re-choose every weight's step (all channels
/// scaled together) and the activation's step. Attention products (a MatMul of two quantized
/// activations, Q·Kᵀ and softmax·V; see <see cref="ProductSearch"/>): alternately re-choose the
/// two operands' steps. Candidates are <c>candidates</c> values linearly spaced in [α·Δ₀, β·Δ₀]
/// (Δ₀: the fitted step), the objective the Pearson similarity between FP32 and quantized
/// outputs — for Q·Kᵀ the attention maps (softmax of the scaled scores), minus γ·ranking loss
/// (<see cref="SimilarityObjective"/>); up to <c>rounds</c> rounds,
/// stopping at the first round that improves nothing. Linear layers are evaluated on at most
/// <see cref="MaxRows"/> calibration rows, the Pearson similarity taken over all their outputs at
/// once; products on the leading calibration samples captured for them
/// (<see cref="ActivationProduct"/>), at most <see cref="MaxRows"/> output rows, the similarity
/// per attention head over all its evaluated rows. Never per row: a row's correlation cannot see
/// a clip that scales the whole row down. Measured: per-row Pearson on linear outputs clipped
/// Swin's attention outputs to ×0.5 and cost a layer up to 12.5 dB of output SQNR (W4A4; 0.7 pt
/// more top-1 drop than the joint form); on the raw Q·Kᵀ scores it chose steps ×0.5–0.7 and cost
/// 0.3 pt at W4A4 on vit and deit, hence attention maps there.
/// </summary>
internal sealed class SearchIntervals(int rounds = 20, int candidates = 20, float alpha = 0.5f, float beta = 1.2f, bool measureBefore = false,
    double gamma = 1, ProductSearch products = ProductSearch.None) : IPass
{
    public const int MaxRows = 256;

    /// <summary>Index pairs per attention row the ranking loss is taken over.</summary>
    public const int RankingPairs = 2048;

    public string Name => "search-intervals";
    public PassContract Contract { get; } = new([Stages.Fitted, Stages.Statistics], [], [Stages.LinearsLowered, Stages.PortableEmitted]);

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
            if (Steppable(site.Parameters) is not { } aq || !stats.Has(site.Value, ObserverKeys.Rows)) continue;
            var layers = site.Uses.Select(u => u.InputIndex == 0 ? WeightedLinear.Of(u.Node, plan) : null).ToList();
            if (layers.Count == 0 || layers.Any(l => l is null || l.Weight.Parameters is not IAdjustableStep || l.Weight.Uses.Count != 1)) continue;
            var rows = stats.Get<RowSampleObserver>(site.Value, ObserverKeys.Rows);
            if (rows.Count == 0 || layers.Any(l => l!.K != rows.Width)) continue;
            var result = SearchLinear(aq, layers!, rows);
            searched++;
            roundsRun += result.Rounds;
            gain += result.Gain;
            float am = result.Multipliers[^1];
            if (am != 1f)
                plan.Update(site.WithNote($"interval search: activation step ×{am:0.###}") with { Parameters = aq.WithStepScaled(am) });
            for (int i = 0; i < layers.Count; i++)
                if (result.Multipliers[i] is var wm && wm != 1f)
                    plan.Update(plan.For(layers[i]!.Weight.Value).WithNote($"interval search: weight steps ×{wm:0.###} ({layers[i]!.Node.Name})")
                        with { Parameters = ScaledWeight(layers[i]!, wm) });
        }
        context.Progress?.Report(new ProgressReport("interval search", sites.Count, sites.Count, "activations"));
        string summary = $"interval search: {searched} activation(s) with their linear layers, {roundsRun} round(s), mean Pearson gain {(searched == 0 ? 0 : gain / searched):0.#####}";
        if (products != ProductSearch.None) summary += "; " + SearchProducts(plan, stats, context);
        context.Info(summary);
        return PassResult.Unchanged;
    }

    private string SearchProducts(QuantizationPlan plan, ActivationStatistics stats, PassContext context)
    {
        int searched = 0, roundsRun = 0, uncaptured = 0;
        double gain = 0;
        var nodes = plan.QuantizedNodes.Select(n => ActivationProduct.Of(n, plan)).OfType<ActivationProduct>().ToList();
        for (int i = 0; i < nodes.Count; i++)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            context.Progress?.Report(new ProgressReport("interval search", i, nodes.Count, "attention products"));
            var product = ActivationProduct.Of(nodes[i].Node, plan)!;
            if (products == ProductSearch.AttentionScores && !product.IsAttentionScores) continue;
            if (Steppable(product.Left.Parameters) is not { } lq || Steppable(product.Right.Parameters) is not { } rq
                || product.Left.Uses.Count != 1 || product.Right.Uses.Count != 1) continue;
            if (product.Sample(stats, MaxRows) is not { } sample) { uncaptured++; continue; }
            var result = SearchProduct(lq, rq, sample, product.IsAttentionScores ? product.ScoreScale : null);
            searched++;
            roundsRun += result.Rounds;
            gain += result.Gain;
            var (lm, rm) = (result.Multipliers[0], result.Multipliers[1]);
            if (lm != 1f)
                plan.Update(product.Left.WithNote($"interval search: step ×{lm:0.###} ({product.Node.Name}, left operand)") with { Parameters = lq.WithStepScaled(lm) });
            if (rm != 1f)
                plan.Update(product.Right.WithNote($"interval search: step ×{rm:0.###} ({product.Node.Name}, right operand)") with { Parameters = rq.WithStepScaled(rm) });
        }
        context.Progress?.Report(new ProgressReport("interval search", nodes.Count, nodes.Count, "attention products"));
        return $"{searched} attention product(s), {roundsRun} round(s), mean objective gain {(searched == 0 ? 0 : gain / searched):0.#####}"
               + (uncaptured > 0 ? $" ({uncaptured} without paired calibration samples, not searched)" : "");
    }

    /// <summary>Chosen step multipliers (weights in layer order, then the activation), rounds run,
    /// and the objective's gain per output.</summary>
    private sealed record Outcome(float[] Multipliers, int Rounds, double Gain);

    private Outcome SearchLinear(IAdjustableStep aq0, IReadOnlyList<WeightedLinear> layers, RowSampleObserver rows)
    {
        int count = Math.Min(rows.Count, MaxRows);
        var x = rows.Rows[..(count * rows.Width)].ToArray();
        long[] shape = [count, rows.Width];
        var references = layers.Select(l => l.Multiply(x, count, l.W)).ToArray();
        var quantizedInput = new LastOf<float[]>(m => Simulated(x, shape, aq0.WithStepScaled(m)));
        var quantizedWeights = layers.Select(l => new LastOf<float[]>(m => l.Simulated(ScaledWeight(l, m)))).ToArray();
        var layerScores = new Dictionary<(int, float, float), double>();
        double Score(float[] m)
        {
            double total = 0;
            for (int i = 0; i < layers.Count; i++)
            {
                var key = (i, m[i], m[^1]);
                if (!layerScores.TryGetValue(key, out double score))
                    layerScores[key] = score = SimilarityObjective.MeanPearson(references[i],
                        layers[i].Multiply(quantizedInput.For(m[^1]), count, quantizedWeights[i].For(m[i])), 1, count * layers[i].N);
                total += score;
            }
            return total;
        }
        var (multipliers, roundsRun, start, end) = Alternate(layers.Count + 1, Score);
        return new Outcome(multipliers, roundsRun, (end - start) / layers.Count);
    }

    // scoreScale: for attention scores, the factor they are scaled by before the Softmax; the
    // objective then compares the attention maps (softmax rows), where clipping the operands
    // flattens the peaks that Pearson on the raw scores does not see. Null for other products.
    private Outcome SearchProduct(IAdjustableStep lq0, IAdjustableStep rq0, ProductSample sample, float? scoreScale)
    {
        float[] Output(float[] left, float[] right)
        {
            var product = sample.Multiply(left, right);
            return scoreScale is { } c ? ActivationProduct.AttentionMaps(product, sample.N, c) : product;
        }
        var reference = Output(sample.Left, sample.Right);
        var pairs = scoreScale is not null ? SimilarityObjective.RankingPairs(sample.N, RankingPairs) : null;
        var left = new LastOf<float[]>(m => ProductSample.Simulated(sample.Left, sample.LeftShape, lq0.WithStepScaled(m)));
        var right = new LastOf<float[]>(m => ProductSample.Simulated(sample.Right, sample.RightShape, rq0.WithStepScaled(m)));
        var scores = new Dictionary<(float, float), double>();
        double Score(float[] m)
        {
            if (!scores.TryGetValue((m[0], m[1]), out double score))
                {
                var output = Output(left.For(m[0]), right.For(m[1]));
                scores[(m[0], m[1])] = score = SimilarityObjective.MeanPearson(reference, output, sample.Pairs, sample.RowsPerPair * sample.N)
                    - (pairs is null ? 0 : gamma * SimilarityObjective.MeanRankingLoss(reference, output, sample.Rows, sample.N, pairs));
            }
            return score;
        }
        var (multipliers, roundsRun, start, end) = Alternate(2, Score);
        return new Outcome(multipliers, roundsRun, end - start);
    }

    /// <summary>
    /// Coordinate ascent over step multipliers (all start at 1, the fitted steps): each round
    /// re-chooses every coordinate in turn from <see cref="Multipliers"/> with the others fixed,
    /// taking a candidate only when the total score rises; stops after <c>rounds</c> rounds or
    /// the first round that changes nothing.
    /// </summary>
    private (float[] Multipliers, int Rounds, double Start, double End) Alternate(int coordinates, Func<float[], double> score)
    {
        var m = Enumerable.Repeat(1f, coordinates).ToArray();
        double current = score(m), start = current;
        int round = 0;
        while (round < rounds)
        {
            round++;
            bool improved = false;
            for (int c = 0; c < coordinates; c++)
                foreach (float candidate in Multipliers)
                {
                    if (candidate == m[c]) continue;
                    var trial = (float[])m.Clone();
                    trial[c] = candidate;
                    double s = score(trial);
                    if (s > current + 1e-12)
                    {
                        (m, current) = (trial, s);
                        improved = true;
                    }
                }
            if (!improved) break;
        }
        return (m, round, start, current);
    }

    /// <summary>The value for the last multiplier asked (searches ask for the same one many times in a row).</summary>
    private sealed class LastOf<T>(Func<float, T> compute)
    {
        private float _m = float.NaN;
        private T? _value;

        public T For(float m)
        {
            if (m != _m) (_m, _value) = (m, compute(m));
            return _value!;
        }
    }

    private static float[] Simulated(float[] x, long[] shape, FittedQuantizer q)
    {
        var xq = (float[])x.Clone();
        q.Simulate(xq, shape);
        return xq;
    }

    /// <summary>A per-tensor activation quantizer whose step the search may move, or null.</summary>
    private static IAdjustableStep? Steppable(FittedQuantizer? q) => q is { Granularity: Granularity.PerTensor } and IAdjustableStep step ? step : null;

    /// <summary>The layer's fitted weight quantizer with every channel's step scaled by <paramref name="m"/>, codes re-rounded (m = 1: the quantizer itself).</summary>
    internal static FittedQuantizer ScaledWeight(WeightedLinear layer, float m) =>
        ((IAdjustableStep)layer.Weight.Parameters!).WithStepScaled(m, layer.W, layer.Shape);
}
