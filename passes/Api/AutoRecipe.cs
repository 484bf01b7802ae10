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
/// samples, and is scored without labels on held-out calibration samples against FP32 (mean KL of
/// the output distributions, then top-1 agreement); the best is run on the model. Candidates are
/// tried cheapest first within a time budget; the ones left when it runs out are skipped, and
/// said so.
/// </summary>
internal static class AutoRecipe
{
    public const string Name = "auto";

    /// <summary>Cheapest first (measured compile times, BENCHMARKS.md): a budget cuts the slow searches first.</summary>
    public static readonly string[] Candidates = ["minmax", "percentile", "repq", "dopq", "adfq", "aocq", "ptq4vit", "liu2021"];

    /// <summary>Held-out samples scored, at most (a quarter of the data when there are fewer than 512 + this).</summary>
    public const int HeldOutSamples = 128;

    public static bool IsAuto(string recipe) => recipe.Equals(Name, StringComparison.OrdinalIgnoreCase);

    /// <summary>Which samples calibrate and which are held out: the first <c>Calibration</c> samples, then
    /// up to <see cref="HeldOutSamples"/> after them.</summary>
    public static (int Calibration, int HeldOut) Split(int available, int requested)
    {
        if (available < 2) throw new OnnxViTQException($"--recipe auto holds out calibration samples to score the recipes: it needs at least 2, the data has {available}");
        if (available >= requested + HeldOutSamples) return (requested, HeldOutSamples);
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
            scores.Add(new AutoScore(candidate, fidelity.MeanKl, fidelity.Agreement, (clock.Elapsed - started).TotalSeconds, null));
        }
        var best = scores.Where(s => s.MeanKl is not null).OrderBy(s => s.MeanKl).ThenByDescending(s => s.Agreement).FirstOrDefault()
                   ?? throw new OnnxViTQException($"--recipe auto: no recipe quantized '{modelName}' ({string.Join("; ", scores.Select(s => $"{s.Recipe} {s.Note}"))})");
        return new AutoChoice(best.Recipe, scores, calibrate, heldOut);
    }
}

/// <summary>One candidate of <c>--recipe auto</c>: its mean KL to FP32 and top-1 agreement on the
/// held-out samples (null when not scored), its compile time, and why it was not scored.</summary>
internal sealed record AutoScore(string Recipe, double? MeanKl, double? Agreement, double Seconds, string? Note);

/// <summary>What <c>--recipe auto</c> chose, every candidate's score, and the calibration/held-out split.</summary>
internal sealed record AutoChoice(string Recipe, IReadOnlyList<AutoScore> Scores, int CalibrationSamples, int HeldOutSamples);
