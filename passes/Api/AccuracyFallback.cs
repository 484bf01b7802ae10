using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;

namespace OnnxViTQ;

/// <summary>
/// <c>--max-drop</c>: when the quantized model loses more than the bound, modules go back to 8 bits,
/// then to float, most sensitive first, until the bound holds. The loss is top-1 drop against FP32
/// on labelled evaluation data when given, else top-1 disagreement with FP32 on held-out calibration
/// samples (no labels), in points either way. A module's sensitivity is measured: the loss with that
/// module alone kept in float, against the loss with every module quantized. Every step is a full
/// quantization of a fresh copy, and its measured loss is reported.
/// </summary>
internal static class AccuracyFallback
{
    /// <summary>Labelled data for the drop: evaluation samples and their labels.</summary>
    public sealed record LabelledData(ICalibrationSource Images, long[] Labels);

    public static QuantizationResult Run(Model model, string modelName, ICalibrationSource calibration, QuantizationOptions options, Recipe recipe,
        double maxDrop, LabelledData? labelled, IProgress<ProgressReport>? progress, CancellationToken cancel, IReadOnlyList<Stage>? goals)
    {
        if (options.MixedPrecision is not null) throw new OnnxViTQException("--max-drop chooses module widths itself; it does not combine with --bits mixed");
        if (maxDrop < 0) throw new OnnxViTQException($"--max-drop must be 0 or more points, got {maxDrop}");
        var original = OnnxModelWriter.ToBytes(model);
        ICalibrationSource calibrate = calibration, scored;
        int heldOut = 0;
        string metric;
        if (labelled is null)
        {
            (int c, heldOut) = AutoRecipe.Split(calibration.Count, options.CalibrationSamples);
            calibrate = calibration.Take(c);
            scored = calibration.Skip(c).Take(heldOut);
            options = options with { CalibrationSamples = c };
            metric = $"top-1 disagreement with FP32 on {heldOut} held-out calibration samples";
        }
        else
        {
            scored = labelled.Images;
            metric = $"top-1 drop against FP32 on {labelled.Images.Count} labelled images";
        }
        var fp32 = ClassificationEvaluator.Predict(model, modelName, scored);
        double fp32Top1 = labelled is null ? 0 : ClassificationEvaluator.Score(fp32, labelled.Labels).Top1;
        double Loss(Model quantized)
        {
            // The session runs the writer's bytes of the quantized model, as the saved file would be.
            var predictions = ClassificationEvaluator.Predict(quantized, modelName, scored);
            return labelled is null
                ? 100 * (1 - ClassificationEvaluator.Agreement(fp32, predictions))
                : 100 * (fp32Top1 - ClassificationEvaluator.Score(predictions, labelled.Labels).Top1);
        }
        (Model Model, QuantizationResult Result, double Loss) Attempt(Recipe r, IReadOnlyList<string> exclude)
        {
            cancel.ThrowIfCancellationRequested();
            var copy = OnnxModelReader.Parse(original, sourceName: modelName);
            var result = Quantizer.Quantize(copy, modelName, calibrate, options with { Exclude = [.. options.Exclude, .. exclude] }, r, progress, cancel, goals);
            return (copy, result, Loss(copy));
        }

        var steps = new List<FallbackStep>();
        var first = Attempt(recipe, []);
        steps.Add(new FallbackStep("all modules as the recipe quantizes them", first.Loss));
        var current = first;
        if (first.Loss > maxDrop)
        {
            var modules = first.Result.Plan.Sites.Select(s => s.Module).Where(m => m.Length > 0).Distinct().ToList();
            var sensitivity = modules.ToDictionary(m => m, m => first.Loss - Attempt(recipe, [m]).Loss);
            var inFloat = new List<string>();
            var eightBit = new Dictionary<string, (string Module, QuantizerChoice Choice)>();
            // The recipe with the 8-bit overrides of the modules not (yet) in float: an override
            // naming an excluded tensor would be refused.
            Recipe Widened() => recipe with
            {
                Quantizers = recipe.Quantizers with
                {
                    Overrides = new Dictionary<string, QuantizerChoice>(recipe.Quantizers.Overrides
                        .Concat(eightBit.Where(kv => !inFloat.Contains(kv.Value.Module)).Select(kv => KeyValuePair.Create(kv.Key, kv.Value.Choice)))),
                },
            };
            foreach (var module in modules.OrderByDescending(m => sensitivity[m]).ThenBy(m => m, StringComparer.Ordinal))
            {
                var sites = first.Result.Plan.Sites.Where(s => s.Module == module && s.Spec is { } spec && spec.Bits < 8).ToList();
                if (sites.Count > 0)
                {
                    foreach (var s in sites) eightBit[s.Name] = (module, new QuantizerChoice(s.Spec!.Kind, 8, s.Spec.Options));
                    current = Attempt(Widened(), inFloat);
                    steps.Add(new FallbackStep($"{module} to 8 bits (sensitivity {sensitivity[module]:0.00} pt)", current.Loss));
                    if (current.Loss <= maxDrop) break;
                }
                inFloat.Add(module);
                current = Attempt(Widened(), inFloat);
                steps.Add(new FallbackStep($"{module} to float (sensitivity {sensitivity[module]:0.00} pt)", current.Loss));
                if (current.Loss <= maxDrop) break;
            }
        }
        // The model the caller holds becomes the last attempt's.
        model.TakeContentsOf(current.Model);
        return current.Result with
        {
            Fallback = new FallbackReport(maxDrop, metric, steps, current.Loss <= maxDrop),
        };
    }
}

/// <summary>One step of <c>--max-drop</c> and the loss measured after it, in points.</summary>
internal sealed record FallbackStep(string Action, double Loss);

/// <summary>What <c>--max-drop</c> did: the bound, how the loss was measured, each step, and whether the bound holds.</summary>
internal sealed record FallbackReport(double MaxDrop, string Metric, IReadOnlyList<FallbackStep> Steps, bool Holds);
