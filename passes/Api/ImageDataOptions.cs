using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Runtime;

namespace OnnxViTQ;

/// <summary>
/// Overrides of the preprocessing applied to 8-bit images (PNG/JPEG folders, uint8 .npy).
/// Every value left <c>null</c> comes from the model's metadata (<c>onnxvitq.preprocess.*</c>),
/// else from ImageNet's mean/std and a center crop of 0.875. Float32 .npy data is used as is.
/// </summary>
public sealed record ImageDataOptions
{
    /// <summary>Per-channel mean of the normalization (one value applies to every channel).</summary>
    public IReadOnlyList<float>? Mean { get; init; }

    /// <summary>Per-channel standard deviation of the normalization (one value applies to every channel).</summary>
    public IReadOnlyList<float>? Std { get; init; }

    /// <summary>Center-crop fraction in (0, 1]: the shorter side is resized to size / fraction, then cropped.</summary>
    public float? CropFraction { get; init; }

    internal ImagePreprocessing Resolve(Model model, ImageInput input)
    {
        var p = ImagePreprocessing.ForModel(model, input.Channels, input.Height, input.Width);
        if (Mean is { } mean) p = p with { Mean = Fit(mean, "mean", input.Channels) };
        if (Std is { } std) p = p with { Std = Fit(std, "std", input.Channels) };
        if (CropFraction is { } crop)
            p = p with { CropFraction = crop is > 0 and <= 1 ? crop : throw new OnnxViTQException($"crop fraction {crop} must be in (0, 1]") };
        return p;
    }

    private static float[] Fit(IReadOnlyList<float> values, string what, int channels) =>
        values.Count == 1 ? Enumerable.Repeat(values[0], channels).ToArray()
        : values.Count == channels ? values.ToArray()
        : throw new OnnxViTQException($"{what} has {values.Count} values; the model has {channels} channels");
}
