using System.Diagnostics;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;

namespace OnnxViTQ;

/// <summary>
/// <c>--recipe auto</c>: each built-in recipe quantizes a copy of the model on the calibration
/// samples, and is scored without labels on the samples held out after them against FP32: the
/// share of samples whose top-1 class stays FP32's, then (on equal counts) mean KL of the output
/// distributions; the best is run on the model. Candidates are tried cheapest first within a time
/// budget; the ones left when it runs out are skipped, and said so.
/// Why agreement first, and why up to 2048 held-out samples (measured, BENCHMARKS.md "--recipe
/// auto"): on the six opset-17 reference models at W4A4, the recipe with the highest agreement on
/// the 2000 evaluation images was within 0.3 pt of the best labelled top-1 on all six, the lowest
/// mean KL on four; scored on 512 calibration samples (4-fold cross-fitted) neither got past three
/// — recipes 1 pt apart in top-1 differ by a few samples in 512, within sampling noise.
/// </summary>
internal static class AutoRecipe
{
    public const string Name = "auto";

    /// <summary>Cheapest first (measured compile times, BENCHMARKS.md): a budget cuts the slow searches first.</summary>
    public static readonly string[] Candidates = ["minmax", "percentile", "repq", "dopq", "adfq", "aocq", "ptq4vit", "liu2021"];

    /// <summary>Held-out samples scored, at most.</summary>
    public const int HeldOutSamples = 2048;

    /// <summary>Fewer samples left after the calibration ones than this, and a quarter of the data is held out instead.</summary>
    public const int MinHeldOutSamples = 128;

    public static bool IsAuto(string recipe) => recipe.Equals(Name, StringComparison.OrdinalIgnoreCase);

    /// <summary>Which samples calibrate and which are held out: the first <c>Calibration</c> samples, then
    /// up to <see cref="HeldOutSamples"/> after them (all the rest when there are at least
    /// <see cref="MinHeldOutSamples"/>, else a quarter of the data).</summary>
    public static (int Calibration, int HeldOut) Split(int available, int requested)
    {
        if (available < 2) throw new OnnxViTQException($"--recipe auto holds out calibration samples to score the recipes: it needs at least 2, the data has {available}");
        if (available >= requested + MinHeldOutSamples) return (requested, Math.Min(available - requested, HeldOutSamples));
        int heldOut = Math.Clamp(available / 4, 1, HeldOutSamples);
        return (Math.Min(requested, available - heldOut), heldOut);
    }

    public static AutoChoice Choose(Model model, string modelName, ICalibrationSource calibration, QuantizationOptions options,
        IProgress<ProgressReport>? progress, CancellationToken cancel)
    {
        var (calibrate, heldOut) = Split(calibration.Count, options.CalibrationSamples);
        var calibrationPart = calibration.Take(calibrate);
        var heldOutPart = calibration.Skip(calibrate).Take(heldOut);
        var reference = PlanOutputs.Run(model, heldOutPart, options.BatchSize, heldOut, modelName);
        var clock = Stopwatch.StartNew();
        var scores = new List<AutoScore>();
        var fidelities = new Dictionary<string, Fidelity>();
        var candidates = options.AutoRecipes ?? Candidates;
        foreach (var name in candidates)
            if (IsAuto(name) || name.EndsWith(".json", StringComparison.OrdinalIgnoreCase)) throw new OnnxViTQException($"--auto-recipes: '{name}' is not a built-in recipe");
            else Recipes.Get(name);
        foreach (var candidate in candidates)
        {
            cancel.ThrowIfCancellationRequested();
            if (clock.Elapsed.TotalSeconds > options.AutoSeconds)
            {
                scores.Add(new AutoScore(candidate, null, null, 0, $"not tried: the {options.AutoSeconds:0} s budget was spent"));
                continue;
            }
            var copy = OnnxModelReader.Parse(OnnxModelWriter.ToBytes(model), sourceName: modelName);
            var started = clock.Elapsed;
            try
            {
                Quantizer.Quantize(copy, modelName, calibrationPart, options with { Recipe = candidate, CalibrationSamples = calibrate, MeasureLayerOutputs = false }, Recipes.Get(candidate),
                    progress, cancel, goals: [Stages.PortableEmitted]);
            }
            catch (OnnxViTQException e)
            {
                // A recipe that does not apply to this model (e.g. a fold it cannot make) is not a candidate.
                scores.Add(new AutoScore(candidate, null, null, (clock.Elapsed - started).TotalSeconds, $"failed: {e.Message}"));
                continue;
            }
            var fidelity = Fidelity.Of(reference, PlanOutputs.Run(copy, heldOutPart, options.BatchSize, heldOut, modelName));
            fidelities[candidate] = fidelity;
            scores.Add(new AutoScore(candidate, fidelity.MeanKl, fidelity.Agreement, (clock.Elapsed - started).TotalSeconds, null));
        }
        var ranked = Rank(scores);
        if (ranked.Count == 0) throw new OnnxViTQException($"--recipe auto: no recipe quantized '{modelName}' ({string.Join("; ", scores.Select(s => $"{s.Recipe} {s.Note}"))})");
        AutoLead? lead = ranked.Count < 2 ? null : AutoLead.Of(ranked[1].Recipe, fidelities[ranked[0].Recipe], fidelities[ranked[1].Recipe]);
        return new AutoChoice(ranked[0].Recipe, scores, calibrate, heldOut, lead);
    }

    /// <summary>The scored candidates, best first: most held-out samples keeping FP32's top-1 class, then least mean KL.</summary>
    public static List<AutoScore> Rank(IEnumerable<AutoScore> scores) =>
        scores.Where(s => s.MeanKl is not null).OrderByDescending(s => s.Agreement).ThenBy(s => s.MeanKl).ToList();
}

/// <summary>How far the chosen recipe is ahead of the next one in top-1 agreement with FP32 on the
/// held-out samples, in points, with the standard error of that paired difference: a lead within
/// two standard errors is sampling noise, and more unlabelled samples would make the choice firmer.</summary>
internal sealed record AutoLead(string RunnerUp, double Points, double StandardError)
{
    public bool WithinNoise => Points < 2 * StandardError;

    public static AutoLead Of(string runnerUp, Fidelity best, Fidelity next)
    {
        int n = best.SameTop1.Length, onlyBest = 0, onlyNext = 0;
        for (int i = 0; i < n; i++)
            if (best.SameTop1[i] != next.SameTop1[i]) { if (best.SameTop1[i]) onlyBest++; else onlyNext++; }
        double d = (double)(onlyBest - onlyNext) / n;
        // Paired proportions: only the samples the two disagree on carry the difference.
        double variance = ((double)(onlyBest + onlyNext) / n - d * d) / n;
        return new AutoLead(runnerUp, 100 * d, 100 * Math.Sqrt(Math.Max(0, variance)));
    }

    public override string ToString() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{Points:0.0#} pt ahead of {RunnerUp} (standard error {StandardError:0.0#} pt{(WithinNoise ? ": within sampling noise, more unlabelled samples after the calibration ones would make the choice firmer" : "")})");
}

/// <summary>One candidate of <c>--recipe auto</c>: its mean KL to FP32 and top-1 agreement on the
/// held-out samples (null when not scored), its compile time, and why it was not scored.</summary>
internal sealed record AutoScore(string Recipe, double? MeanKl, double? Agreement, double Seconds, string? Note);

/// <summary>What <c>--recipe auto</c> chose, every candidate's score, the calibration/held-out split,
/// and the choice's lead over the next candidate (null with one candidate scored).</summary>
internal sealed record AutoChoice(string Recipe, IReadOnlyList<AutoScore> Scores, int CalibrationSamples, int HeldOutSamples, AutoLead? Lead);
