using System.CommandLine;
using System.Globalization;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Cli;

/// <summary>Image preprocessing options shared by quantize and eval; they override what the
/// model's metadata says (see <see cref="ImagePreprocessing.ForModel"/>).</summary>
internal sealed class PreprocessingOptions
{
    public Option<string?> Mean { get; } = new("--mean") { Description = "Per-channel mean for 8-bit image data, e.g. 0.485,0.456,0.406 (default: model metadata, else ImageNet)" };
    public Option<string?> Std { get; } = new("--std") { Description = "Per-channel std for 8-bit image data (default: model metadata, else ImageNet)" };
    public Option<float?> CropPct { get; } = new("--crop-pct") { Description = "Center-crop fraction: resize the shorter side to size/crop-pct, then crop (default: model metadata, else 0.875)" };

    public void AddTo(Command c)
    {
        c.Add(Mean);
        c.Add(Std);
        c.Add(CropPct);
    }

    public ImagePreprocessing Resolve(ParseResult r, Model model, ImageInput input)
    {
        var p = ImagePreprocessing.ForModel(model, input.Channels, input.Height, input.Width);
        if (r.GetValue(Mean) is { } mean) p = p with { Mean = ParseFloats(mean, "--mean", input.Channels) };
        if (r.GetValue(Std) is { } std) p = p with { Std = ParseFloats(std, "--std", input.Channels) };
        if (r.GetValue(CropPct) is { } crop)
            p = p with { CropFraction = crop is > 0 and <= 1 ? crop : throw new OnnxViTQException($"--crop-pct {crop} must be in (0, 1]") };
        return p;
    }

    private static float[] ParseFloats(string text, string option, int channels)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var values = new float[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!float.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out values[i]))
                throw new OnnxViTQException($"{option} '{text}' is not a comma-separated list of numbers");
        if (values.Length == 1) return Enumerable.Repeat(values[0], channels).ToArray();
        if (values.Length != channels) throw new OnnxViTQException($"{option} has {values.Length} values; the model has {channels} channels");
        return values;
    }
}

internal static class Paths
{
    /// <summary>Fails with a clear message unless <paramref name="path"/> is an existing file.</summary>
    public static string ExistingFile(string path, string what)
    {
        if (Directory.Exists(path)) throw new OnnxViTQException($"{what} '{path}' is a directory, not a file");
        if (!File.Exists(path)) throw new OnnxViTQException($"{what} '{path}' does not exist");
        return path;
    }

    /// <summary>True when both paths name the same file (after resolving symbolic links).</summary>
    public static bool SameFile(string a, string b) => string.Equals(Resolve(a), Resolve(b), StringComparison.Ordinal);

    private static string Resolve(string path)
    {
        string full = Path.GetFullPath(path);
        try
        {
            if (File.Exists(full) && File.ResolveLinkTarget(full, returnFinalTarget: true) is { } target) return target.FullName;
        }
        catch (IOException) { }
        return full;
    }

    public static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.00} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.00} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:0.0} KiB",
        _ => $"{bytes} B",
    };
}
