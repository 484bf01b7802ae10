using OnnxViTQ;
using OnnxViTQ.Data;
using OnnxViTQ.Passes;
using OnnxViTQ.Serialization;

/// <summary>
/// "Which label-free score picks the recipe" (marked, refreshed alone): why <c>--recipe auto</c>
/// ranks by top-1 agreement and scores on many held-out images. On every opset-17 model at W4A4,
/// each built-in recipe calibrated on the 512 samples; the labelled drop on the evaluation images
/// against each label-free score's pick: agreement or mean KL to FP32 on auto's 2048 unlabelled
/// held-out images, on the evaluation images themselves (labels unused), and on the 512
/// calibration samples (4-fold cross-fitted: calibrated on 384, scored on the other 128).
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only auto-scores</c>.
/// </summary>
internal static class AutoScoresSection
{
    private const int Folds = 4;

    public static void Write(Bench b)
    {
        var r = b.Report;
        r.AppendLine("## Which label-free score picks the recipe");
        r.AppendLine();
        b.Regenerate("auto-scores");
        r.AppendLine("Each built-in recipe at W4A4, calibrated on the 512 samples; each cell: the recipe a label-free score ranks first and how many pt of top-1 it loses " +
                     $"on {b.EvalSet} beyond the labelled best (✓ within 0.3). Scores: top-1 agreement with FP32 or mean KL to FP32 on the 2048 unlabelled held-out images " +
                     "(what `--recipe auto` uses), on the evaluation images (labels unused; a bound on what any label-free score could do), and on the 512 calibration samples " +
                     $"cross-fitted ({Folds} folds: calibrated on the other {512 - 512 / Folds}).");
        r.AppendLine();
        string[] scores = ["agreement, 2048 held out", "KL, 2048 held out", "agreement, eval images", "KL, eval images", "agreement, 512 cross-fitted", "KL, 512 cross-fitted"];
        r.AppendLine($"| model | labelled best | {string.Join(" | ", scores)} |");
        r.AppendLine($"|---|---|{string.Concat(scores.Select(_ => "---|"))}");
        var hits = new int[scores.Length];
        var models = b.Committed.Where(f => f.Contains(".opset17.", StringComparison.Ordinal)).ToList();
        foreach (var f in models)
        {
            var fp32Model = OnnxModelReader.Load(b.ModelPath(f));
            var calib = new NpyTensorSource(b.Calib, null);
            var held = new NpyTensorSource(b.Unlabelled, ImagePreprocessing.ForModel(fp32Model, 3, 28, 28));
            var eval = b.EvalSource(fp32Model);
            var reference = (Held: Outputs(fp32Model, held, f), Eval: Outputs(fp32Model, eval, f), Calib: Outputs(fp32Model, calib, f));
            var labels = b.Labels;
            double fpTop1 = Top1(reference.Eval, labels);
            var rows = new List<(string Recipe, double Drop, Fidelity[] Scored)>();
            foreach (var recipe in AutoRecipe.Candidates)
            {
                var options = new QuantizationOptions { Recipe = recipe, Bits = BitWidths.Parse("W4A4"), MeasureLayerOutputs = false };
                var model = OnnxModelReader.Load(b.ModelPath(f));
                Quantizer.Quantize(model, f, calib, options, Recipes.Get(recipe));
                var qEval = Outputs(model, eval, f);
                var crossFitted = new List<float[]>();
                for (int k = 0; k < Folds; k++)
                {
                    var fold = OnnxModelReader.Load(b.ModelPath(f));
                    int size = calib.Count / Folds;
                    Quantizer.Quantize(fold, f, calib.Without(k * size, size), options with { CalibrationSamples = calib.Count - size }, Recipes.Get(recipe));
                    crossFitted.AddRange(PlanOutputs.Run(fold, calib.Skip(k * size).Take(size), 64, size, f));
                }
                double drop = 100 * (fpTop1 - Top1(qEval, labels));
                Console.WriteLine($"{f} {recipe} W4A4: drop {drop:0.00}");
                rows.Add((recipe, drop, [Fidelity.Of(reference.Held, Outputs(model, held, f)), Fidelity.Of(reference.Eval, qEval), Fidelity.Of(reference.Calib, crossFitted)]));
            }
            double best = rows.Min(x => x.Drop);
            var cells = new List<string>();
            for (int s = 0; s < scores.Length; s++)
            {
                int set = s / 2;
                bool agreement = s % 2 == 0;
                var pick = agreement
                    ? rows.OrderByDescending(x => x.Scored[set].Agreeing).ThenBy(x => x.Scored[set].MeanKl).First()
                    : rows.MinBy(x => x.Scored[set].MeanKl);
                double gap = pick.Drop - best;
                if (gap <= 0.3 + 1e-9) hits[s]++;
                cells.Add($"{pick.Recipe} +{gap:0.00} {(gap <= 0.3 + 1e-9 ? "✓" : "✗")}");
            }
            var bestRecipe = rows.MinBy(x => x.Drop);
            r.AppendLine($"| {f} | {bestRecipe.Recipe} {best:0.00} | {string.Join(" | ", cells)} |");
        }
        r.AppendLine($"| within 0.3 pt | | {string.Join(" | ", hits.Select(h => $"{h} of {models.Count}"))} |");
        r.AppendLine();
        r.AppendLine($"Picks within 0.3 pt: agreement on 2048 held-out images {hits[0]} of {models.Count}, on the 512 calibration samples cross-fitted {hits[4]}; " +
                     $"mean KL {hits[1]} and {hits[5]}. Recipes 1 pt of top-1 apart differ on about 5 of 512 samples, within the sampling noise of a paired count that small.");
        r.AppendLine();
    }

    private static float[][] Outputs(OnnxViTQ.Ir.Model model, ICalibrationSource source, string name) => PlanOutputs.Run(model, source, 64, source.Count, name);

    private static double Top1(float[][] logits, long[] labels)
    {
        int right = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            int arg = 0;
            for (int c = 1; c < logits[i].Length; c++) if (logits[i][c] > logits[i][arg]) arg = c;
            if (arg == labels[i]) right++;
        }
        return (double)right / logits.Length;
    }
}
