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

    /// <summary>The overrides given on the command line (the library fills in the rest from the model).</summary>
    public ImageDataOptions Read(ParseResult r) => new()
    {
        Mean = r.GetValue(Mean) is { } mean ? ParseFloats(mean, "--mean") : null,
        Std = r.GetValue(Std) is { } std ? ParseFloats(std, "--std") : null,
        CropFraction = r.GetValue(CropPct) is { } crop
            ? crop is > 0 and <= 1 ? crop : throw new OnnxViTQException($"--crop-pct {crop} must be in (0, 1]")
            : null,
    };

    public ImagePreprocessing Resolve(ParseResult r, Model model, ImageInput input)
    {
        try
        {
            return Read(r).Resolve(model, input);
        }
        catch (OnnxViTQException e) when (e.Message.StartsWith("mean ", StringComparison.Ordinal) || e.Message.StartsWith("std ", StringComparison.Ordinal))
        {
            throw new OnnxViTQException("--" + e.Message);
        }
    }

    private static float[] ParseFloats(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var values = new float[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!float.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out values[i]))
                throw new OnnxViTQException($"{option} '{text}' is not a comma-separated list of numbers");
        return values;
    }
}

/// <summary><c>--device</c> of quantize, eval and bench: where ONNX Runtime runs the sessions.</summary>
internal sealed class DeviceOption
{
    public Option<string> Option { get; } = new("--device")
    {
        Description = "Where ONNX Runtime runs calibration, searches, evaluation and timing: cpu, cuda or cuda:N. CUDA needs the GPU build " +
                      "(-p:OnnxRuntimeFlavor=Gpu) and CUDA 13 with cuDNN; com.onnxvitq ops (--format native) are CPU kernels and run on the CPU either way",
        DefaultValueFactory = _ => "cpu",
    };

    /// <summary>The device asked for, checked at once: an unusable device fails before anything is read or written.</summary>
    public ExecutionDevice Read(ParseResult r)
    {
        var device = ExecutionDevice.Parse(r.GetValue(Option));
        device.EnsureAvailable();
        return device;
    }
}

internal static class Paths
{
    /// <summary>Fails with a clear message unless <paramref name="path"/> is an existing file.</summary>
    public static string ExistingFile(string path, string what) => OnnxQuantizer.ExistingFile(path, what);

    /// <summary>True when both paths name the same file (after resolving symbolic links).</summary>
    public static bool SameFile(string a, string b) => OnnxQuantizer.SameFile(a, b);

    /// <summary>Writes a model a command made to <paramref name="outPath"/> (atomically), creating its folder.</summary>
    public static void SaveModel(OnnxViTQ.Ir.Model model, string outPath)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(outPath));
        if (dir is not null) Directory.CreateDirectory(dir);
        OnnxViTQ.Serialization.OnnxModelWriter.Save(model, outPath);
    }

    public static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.00} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.00} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:0.0} KiB",
        _ => $"{bytes} B",
    };
}
