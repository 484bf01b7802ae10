using System.Globalization;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;

namespace OnnxViTQ;

/// <summary>
/// Concrete sizes for the image input's dynamic dimensions (<c>--input-shape pixel_values:1x3x48x320</c>,
/// the name optional for a single-input model): exports with a dynamic height or width
/// (paddle2onnx, OCR models) calibrate at one shape. The batch stays as the model declares it.
/// </summary>
public sealed record InputShape(string? Name, IReadOnlyList<long> Dims)
{
    /// <summary>"name:NxCxHxW" or "NxCxHxW".</summary>
    public static InputShape Parse(string text)
    {
        string trimmed = text.Trim();
        int colon = trimmed.LastIndexOf(':');
        string? name = colon > 0 ? trimmed[..colon] : null;
        string dims = colon >= 0 ? trimmed[(colon + 1)..] : trimmed;
        var parts = dims.Split('x', StringSplitOptions.TrimEntries);
        var values = new List<long>();
        foreach (var p in parts)
        {
            if (!long.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out long v) || v < 1 || v > 1 << 20)
                throw new OnnxViTQException($"--input-shape '{text}': '{p}' is not a size from 1 to {1 << 20}; expected [name:]NxCxHxW, e.g. pixel_values:1x3x48x320");
            values.Add(v);
        }
        if (values.Count != 4) throw new OnnxViTQException($"--input-shape '{text}' has {values.Count} sizes; an image input is NxCxHxW, e.g. pixel_values:1x3x48x320");
        return new InputShape(name, values);
    }

    /// <summary>As <see cref="Parse"/> reads it.</summary>
    public override string ToString() => $"{(Name is null ? "" : Name + ":")}{string.Join("x", Dims)}";

    /// <summary>
    /// Gives <paramref name="model"/>'s image input concrete channel, height and width sizes where the
    /// export left them dynamic: from <paramref name="shape"/>, else from the calibration data at
    /// <paramref name="dataPath"/> when it holds float tensors [N,C,H,W] (images are preprocessed to the
    /// model's size, so they cannot say it). A fixed dimension given another size is an error. Returns
    /// what puts the declared shape back (the written model keeps its dynamic dimensions).
    /// </summary>
    internal static Action Fix(Model model, string modelName, InputShape? shape, string? dataPath = null)
    {
        var inputs = model.Graph.Inputs.Where(v => !v.IsInitializer).ToList();
        if (inputs.Count != 1 || inputs[0].Type?.Shape is not { Count: 4 } declared) return () => { }; // ImageInput.Of says why
        var input = inputs[0];
        if (shape?.Name is { } name && name != input.Name)
            throw new OnnxViTQException($"--input-shape names input '{name}', but '{modelName}' has input '{input.Name}'");
        bool dynamic = declared.Skip(1).Any(d => d.Size is null);
        if (shape is null && !dynamic) return () => { };
        var sizes = shape?.Dims ?? FromData(dataPath) ?? throw new OnnxViTQException(
            $"'{modelName}' input '{input.Name}' has shape [{string.Join(",", declared)}]; give its size with --input-shape {input.Name}:1x{Hint(declared[1], 3)}x{Hint(declared[2], 224)}x{Hint(declared[3], 224)} " +
            "(the size images are preprocessed to), or use float32 [N,C,H,W] .npy data of that size");
        string[] axes = ["batch", "channels", "height", "width"];
        for (int i = 0; i < 4; i++)
            if (declared[i].Size is { } fixedSize && fixedSize != sizes[i] && !(i == 0 && shape is null))
                throw new OnnxViTQException($"'{modelName}' input '{input.Name}' has a fixed {axes[i]} of {fixedSize}, but {(shape is null ? $"the calibration data '{dataPath}' has" : $"--input-shape {shape} gives")} {sizes[i]}");
        var original = input.Type!;
        input.Type = new TensorTypeInfo(original.ElementType, [declared[0], .. Enumerable.Range(1, 3).Select(i => declared[i].Size is null ? Dim.Known(sizes[i]) : declared[i])]);
        return () => input.Type = original;
    }

    private static string Hint(Dim d, long fallback) => (d.Size ?? fallback).ToString(CultureInfo.InvariantCulture);

    /// <summary>[N,C,H,W] of float tensors in a .npy file or the first .npy of a folder; null for images.</summary>
    private static IReadOnlyList<long>? FromData(string? dataPath)
    {
        string? file = dataPath is null ? null
            : File.Exists(dataPath) ? dataPath
            : Directory.Exists(dataPath) ? Directory.EnumerateFiles(dataPath, "*.npy", SearchOption.AllDirectories).Order(StringComparer.Ordinal).FirstOrDefault()
            : null;
        if (file is null || !file.EndsWith(".npy", StringComparison.OrdinalIgnoreCase)) return null;
        var npy = NpyFile.Open(file);
        if (npy.DType is not (NpyDType.Float32 or NpyDType.Float64)) return null;
        return npy.Shape.Count switch
        {
            4 => npy.Shape,
            3 => [1, .. npy.Shape],
            _ => null,
        };
    }
}
