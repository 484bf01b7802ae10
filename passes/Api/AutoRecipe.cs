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
/// samples, and is scored without labels on the samples held out after them (up to 2048) against
/// FP32: mean KL of the output distributions, then (on equal KL) the share of samples whose top-1
/// class stays FP32's; the best is run on the model. Candidates are tried cheapest first within a
/// time budget; the ones left when it runs out are skipped, and said so.
/// Why KL first (measured, BENCHMARKS.md "Which label-free score picks the recipe", W4A4, the six
/// opset-17 models): on 2048 held-out images the lowest mean KL picked a recipe within 0.3 pt of the
/// labelled best on 4 of 6, the highest agreement on 2 of 6 — agreement, a count, is the noisier
/// score on another sample (on the evaluation images themselves it picked 6 of 6); on 512
/// calibration samples, cross-fitted, KL got 3 and agreement 1.
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

    /// <summary>The scored candidates, best first: least mean KL to FP32, then most held-out samples keeping FP32's top-1 class.</summary>
    public static List<AutoScore> Rank(IEnumerable<AutoScore> scores) =>
        scores.Where(s => s.MeanKl is not null).OrderBy(s => s.MeanKl).ThenByDescending(s => s.Agreement).ToList();
}

/// <summary>How far the chosen recipe is ahead of the next one in mean KL to FP32 on the held-out
/// samples, with the standard error of that paired difference: a lead within two standard errors
/// is sampling noise, and more unlabelled samples would make the choice firmer.</summary>
internal sealed record AutoLead(string RunnerUp, double KlDifference, double StandardError)
{
    public bool WithinNoise => KlDifference < 2 * StandardError;

    public static AutoLead Of(string runnerUp, Fidelity best, Fidelity next)
    {
        var verdict = PlanCheck.Compare(next, best);
        return new AutoLead(runnerUp, verdict.Without - verdict.With, verdict.StandardError);
    }

    public override string ToString() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"mean KL {KlDifference:0.####} below {RunnerUp}'s (standard error {StandardError:0.####}{(WithinNoise ? ": within sampling noise, more unlabelled samples after the calibration ones would make the choice firmer" : "")})");
}

/// <summary>One candidate of <c>--recipe auto</c>: its mean KL to FP32 and top-1 agreement on the
/// held-out samples (null when not scored), its compile time, and why it was not scored.</summary>
internal sealed record AutoScore(string Recipe, double? MeanKl, double? Agreement, double Seconds, string? Note);

/// <summary>What <c>--recipe auto</c> chose, every candidate's score, the calibration/held-out split,
/// and the choice's lead over the next candidate (null with one candidate scored).</summary>
internal sealed record AutoChoice(string Recipe, IReadOnlyList<AutoScore> Scores, int CalibrationSamples, int HeldOutSamples, AutoLead? Lead);
