using System.Globalization;
using Microsoft.Build.Framework;

namespace OnnxViTQ.Build;

/// <summary>One <c>OnnxQuantize</c> item resolved against the project: absolute paths and the
/// onnxvitq command line it turns into.</summary>
internal sealed record QuantizeRequest(string Model, string Calibration, string Output, string? JsonReport, string? HtmlReport,
    string TargetPath, IReadOnlyList<string> Arguments, IReadOnlyList<string> ExtraInputs)
{
    /// <summary>Metadata passed through as <c>--name value</c> options when present.</summary>
    private static readonly (string Metadata, string Option)[] PassThrough =
    [
        ("Recipe", "--recipe"), ("Bits", "--bits"), ("Format", "--format"), ("Samples", "--samples"), ("BatchSize", "--batch-size"),
        ("Percentile", "--percentile"), ("ExternalData", "--external-data"), ("Mean", "--mean"), ("Std", "--std"), ("CropPct", "--crop-pct"),
        ("Device", "--device"), ("InputShape", "--input-shape"),
    ];

    /// <summary>Reads the item; throws <see cref="RequestException"/> with an OVQ code when it cannot be used.</summary>
    public static QuantizeRequest From(ITaskItem item, string projectDirectory, string outputDirectory)
    {
        string model = Full(item.ItemSpec, projectDirectory);
        if (!File.Exists(model)) throw new RequestException(ErrorCodes.ModelNotFound, model, $"model '{item.ItemSpec}' does not exist");
        string calibrationText = item.GetMetadata("Calibration");
        if (calibrationText.Length == 0)
            throw new RequestException(ErrorCodes.CalibrationNotFound, model, $"OnnxQuantize item '{item.ItemSpec}' has no Calibration metadata (a folder of images or .npy files, or one .npy)");
        string calibration = Full(calibrationText, projectDirectory);
        if (!File.Exists(calibration) && !Directory.Exists(calibration))
            throw new RequestException(ErrorCodes.CalibrationNotFound, model, $"calibration data '{calibrationText}' of '{item.ItemSpec}' does not exist");

        string outputName = Value(item, "OutputName") ?? Path.GetFileNameWithoutExtension(model) + ".quantized.onnx";
        if (outputName.IndexOfAny([.. Path.GetInvalidFileNameChars(), '/', '\\']) >= 0)
            throw new RequestException(ErrorCodes.InvalidOptions, model, $"OutputName '{outputName}' of '{item.ItemSpec}' must be a file name without folders (use TargetPath to place it)");
        string output = Path.Combine(outputDirectory, outputName);
        if (string.Equals(Path.GetFullPath(output), model, StringComparison.Ordinal))
            throw new RequestException(ErrorCodes.InvalidOptions, model, $"the quantized output of '{item.ItemSpec}' would overwrite the model");

        var args = new List<string> { "quantize", model, "-o", output, "--calib", calibration };
        var extraInputs = new List<string>();
        foreach (var (metadata, option) in PassThrough)
            if (Value(item, metadata) is { } v)
            {
                args.Add(option);
                args.Add(v);
            }
        if (Value(item, "Recipe") is { } recipe && recipe.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            string recipeFile = Full(recipe, projectDirectory);
            args[args.IndexOf(recipe)] = recipeFile;
            extraInputs.Add(recipeFile);
        }
        string? json = ReportPath(item, "Report", projectDirectory, output, ".report.json");
        string? html = ReportPath(item, "HtmlReport", projectDirectory, output, ".report.html");
        if (json is not null) args.AddRange(["--report", json]);
        if (html is not null) args.AddRange(["--html", html]);
        if (Value(item, "EvalData") is { } evalData)
        {
            string labels = Value(item, "EvalLabels")
                ?? throw new RequestException(ErrorCodes.InvalidOptions, model, $"OnnxQuantize item '{item.ItemSpec}' has EvalData but no EvalLabels");
            args.AddRange(["--eval-data", Full(evalData, projectDirectory), "--eval-labels", Full(labels, projectDirectory)]);
            extraInputs.Add(Full(evalData, projectDirectory));
            extraInputs.Add(Full(labels, projectDirectory));
        }
        switch (Value(item, "EmbedPreprocessing")?.ToLowerInvariant())
        {
            case null or "false": break;
            case "true": args.Add("--embed-preprocessing"); break;
            case var other:
                throw new RequestException(ErrorCodes.InvalidOptions, model, $"EmbedPreprocessing of '{item.ItemSpec}' must be true or false, not '{other}'");
        }
        // KeepInFloat="head;mlp 11;re:attn" (Exclude is an item attribute MSBuild reserves).
        if (Value(item, "KeepInFloat") is { } keep)
            foreach (var pattern in keep.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                args.AddRange(["--exclude", pattern]);
        if (Value(item, "Arguments") is { } extra) args.AddRange(SplitArguments(extra));
        // A report path is written, and deleted when a run fails: it must not name a file this item
        // reads (Report="m.onnx" on the item for m.onnx would destroy the model) or the output.
        var reads = new[] { model, calibration }.Concat(extraInputs).ToList();
        foreach (var (metadata, path) in new[] { ("Report", json), ("HtmlReport", html) })
        {
            if (path is null) continue;
            if (reads.FirstOrDefault(r => SamePath(r, path) || (Directory.Exists(r) && Inside(path, r))) is { } input)
                throw new RequestException(ErrorCodes.InvalidOptions, model, $"{metadata} '{path}' of '{item.ItemSpec}' would overwrite an input ('{input}'); choose another path");
            if (SamePath(path, output) || ExternalDataFiles.IsDataFileOf(path, output))
                throw new RequestException(ErrorCodes.InvalidOptions, model, $"{metadata} '{path}' of '{item.ItemSpec}' is the quantized model's own path; choose another path");
        }
        if (json is not null && html is not null && SamePath(json, html))
            throw new RequestException(ErrorCodes.InvalidOptions, model, $"Report and HtmlReport of '{item.ItemSpec}' are the same file '{json}'");
        string targetPath = Value(item, "TargetPath") ?? outputName;
        return new QuantizeRequest(model, calibration, output, json, html, targetPath, args, extraInputs);
    }

    /// <summary>The outputs a run leaves (the model, its external data files as they are now, the reports).</summary>
    public IEnumerable<string> Outputs =>
        new[] { Output, JsonReport, HtmlReport }.Concat(ExternalDataFiles.Of(Output)).Where(p => p is not null).Select(p => p!);

    /// <summary>"true" puts the report beside the quantized model in obj/; a path is taken relative to the project.</summary>
    private static string? ReportPath(ITaskItem item, string metadata, string projectDirectory, string output, string suffix) =>
        Value(item, metadata) switch
        {
            null => null,
            { } v when v.Equals("false", StringComparison.OrdinalIgnoreCase) => null,
            { } v when v.Equals("true", StringComparison.OrdinalIgnoreCase) => Path.ChangeExtension(output, null) + suffix,
            { } v => Full(v, projectDirectory),
        };

    private static string? Value(ITaskItem item, string name) => item.GetMetadata(name) is { Length: > 0 } v ? v.Trim() : null;

    private static string Full(string path, string projectDirectory) => Path.GetFullPath(Path.Combine(projectDirectory, path));

    private static bool SamePath(string a, string b) => string.Equals(Resolved(a), Resolved(b), StringComparison.Ordinal);

    private static bool Inside(string path, string folder) =>
        Resolved(path).StartsWith(Resolved(folder).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    /// <summary>The full path with symbolic links resolved (a link to the model is the model).</summary>
    private static string Resolved(string path)
    {
        string full = Path.GetFullPath(path);
        try
        {
            if (File.Exists(full) && File.ResolveLinkTarget(full, returnFinalTarget: true) is { } target) return target.FullName;
        }
        catch (IOException) { }
        return full;
    }

    /// <summary>Splits free-form extra arguments on spaces, keeping "double-quoted" parts together.</summary>
    internal static IEnumerable<string> SplitArguments(string text)
    {
        var current = new System.Text.StringBuilder();
        bool quoted = false, any = false;
        foreach (char c in text)
        {
            if (c == '"') { quoted = !quoted; any = true; continue; }
            if (char.IsWhiteSpace(c) && !quoted)
            {
                if (any) yield return current.ToString();
                current.Clear();
                any = false;
                continue;
            }
            current.Append(c);
            any = true;
        }
        if (any) yield return current.ToString();
    }

    public override string ToString() => string.Join(" ", Arguments.Select(a => a.Contains(' ') ? $"\"{a}\"" : a).Select(a => a.ToString(CultureInfo.InvariantCulture)));
}

/// <summary>An item that cannot be quantized as given: the OVQ code, the file to point at, the message.</summary>
internal sealed class RequestException(string code, string file, string message) : Exception(message)
{
    public string Code { get; } = code;
    public string File { get; } = file;
}
