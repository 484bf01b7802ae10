namespace OnnxViTQ;

/// <summary>What <see cref="OnnxQuantizer.QuantizeFile"/> did.</summary>
/// <param name="ModelPath">The FP32 model that was read.</param>
/// <param name="OutputPath">The quantized model that was written.</param>
/// <param name="Recipe">Name of the recipe applied.</param>
/// <param name="Bits">Default bit widths, e.g. <c>W8A8</c>.</param>
/// <param name="Format">Form of the written model.</param>
/// <param name="QuantizedNodes">Nodes with at least one quantized input, linear layers lowered to integer ops included.</param>
/// <param name="CalibrationSamples">Calibration samples run through the model.</param>
/// <param name="Passes">Compiler passes in the order they ran, with their wall-clock time.</param>
/// <param name="Warnings">Warnings the passes raised (one line each).</param>
public sealed record QuantizationSummary(
    string ModelPath, string OutputPath, string Recipe, string Bits, OutputFormat Format, int QuantizedNodes, long CalibrationSamples,
    IReadOnlyList<PassTime> Passes, IReadOnlyList<string> Warnings)
{
    /// <summary>The full result for the tool's report writers.</summary>
    internal QuantizationResult Result { get; init; } = null!;

    /// <summary>MatMul/Gemm/Conv nodes of the input model.</summary>
    internal int QuantizableNodes { get; init; }

    /// <summary>Options the run used.</summary>
    internal QuantizationOptions Options { get; init; } = null!;
}

/// <summary>Wall-clock time of one compiler pass.</summary>
/// <param name="Pass">Pass name as it appears in recipes.</param>
/// <param name="Elapsed">Time the pass took.</param>
public sealed record PassTime(string Pass, TimeSpan Elapsed);

/// <summary>Top-1 accuracy of a classifier on labelled data.</summary>
/// <param name="Top1">Fraction of samples whose arg-max logit equals the label.</param>
/// <param name="Samples">Samples evaluated.</param>
public sealed record AccuracyResult(double Top1, int Samples);
