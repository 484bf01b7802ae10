using System.Diagnostics;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace OnnxViTQ.Build;

/// <summary>
/// Quantizes every <c>OnnxQuantize</c> item by running the bundled <c>onnxvitq quantize</c> in its
/// own process (ONNX Runtime never loads into MSBuild, nothing stays locked). Incremental: a
/// model whose inputs have the fingerprint of its last successful run is skipped. A failure is
/// an <c>OVQ</c> error naming the model, and leaves no output behind.
/// </summary>
public sealed class QuantizeOnnxModels : Microsoft.Build.Utilities.Task, ICancelableTask
{
    private volatile Process? _running;
    private volatile bool _cancelled;

    /// <summary>The <c>OnnxQuantize</c> items (model paths with their options as metadata).</summary>
    [Required] public ITaskItem[] Models { get; set; } = [];

    /// <summary>Relative paths in items resolve against this folder.</summary>
    [Required] public string ProjectDirectory { get; set; } = "";

    /// <summary>Where quantized models go (under obj/).</summary>
    [Required] public string OutputDirectory { get; set; } = "";

    /// <summary>The bundled onnxvitq.dll.</summary>
    [Required] public string ToolPath { get; set; } = "";

    /// <summary>The dotnet host that runs the tool (default: the one running the build).</summary>
    public string? DotnetHost { get; set; }

    /// <summary>The quantized models, with <c>TargetPath</c> (where they go in the output) and <c>SourceModel</c>.</summary>
    [Output] public ITaskItem[] QuantizedModels { get; set; } = [];

    /// <summary>Every file the task wrote (models, reports, fingerprints), for incremental clean.</summary>
    [Output] public ITaskItem[] FilesWritten { get; set; } = [];

    /// <inheritdoc />
    public override bool Execute()
    {
        var produced = new List<ITaskItem>();
        var written = new List<ITaskItem>();
        string outputDirectory = Path.GetFullPath(Path.Combine(ProjectDirectory, OutputDirectory));
        string tool = Path.GetFullPath(ToolPath);
        foreach (var item in Models)
        {
            if (_cancelled) return false;
            QuantizeRequest request;
            try
            {
                request = QuantizeRequest.From(item, ProjectDirectory, outputDirectory);
            }
            catch (RequestException e)
            {
                Error(e.Code, e.File, e.Message);
                continue;
            }
            string stamp = request.Output + ".inputs";
            string fingerprint;
            try
            {
                fingerprint = InputFingerprint.Compute(request, Path.GetDirectoryName(tool)!);
            }
            catch (IOException e)
            {
                Error(ErrorCodes.CalibrationNotFound, request.Model, $"cannot read the inputs of '{item.ItemSpec}': {e.Message}");
                continue;
            }
            bool upToDate = File.Exists(stamp) && File.ReadAllText(stamp).Trim() == fingerprint
                            && File.Exists(request.Output) && (request.JsonReport is null || File.Exists(request.JsonReport)) && (request.HtmlReport is null || File.Exists(request.HtmlReport));
            if (upToDate)
                Log.LogMessage(MessageImportance.High, $"OnnxQuantize: {item.ItemSpec} is up to date, skipped ({request.Output})");
            else if (!Run(item, request, tool, stamp, fingerprint))
                continue;
            var model = new TaskItem(request.Output);
            model.SetMetadata("TargetPath", request.TargetPath);
            model.SetMetadata("SourceModel", request.Model);
            produced.Add(model);
            // A model past 2 GiB reads its weights from a file beside it: it travels with the model.
            foreach (var data in ExternalDataFiles.Of(request.Output))
            {
                var sidecar = new TaskItem(data);
                string targetFolder = Path.GetDirectoryName(request.TargetPath) ?? "";
                sidecar.SetMetadata("TargetPath", Path.Combine(targetFolder, Path.GetFileName(data)));
                sidecar.SetMetadata("SourceModel", request.Model);
                produced.Add(sidecar);
            }
            written.AddRange(request.Outputs.Append(stamp).Where(File.Exists).Select(p => new TaskItem(p)));
        }
        QuantizedModels = [.. produced];
        FilesWritten = [.. written];
        return !Log.HasLoggedErrors;
    }

    private bool Run(ITaskItem item, QuantizeRequest request, string tool, string stamp, string fingerprint)
    {
        if (!File.Exists(tool))
        {
            Error(ErrorCodes.ToolNotFound, request.Model, $"the onnxvitq tool is missing at '{tool}' (reinstall the OnnxViTQ.Build package)");
            return false;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(request.Output)!);
        File.Delete(stamp); // a run that fails half way must not look up to date
        // What the outputs were before the run: a failure removes only what the run wrote.
        var before = request.Outputs.Where(File.Exists).ToDictionary(p => p, File.GetLastWriteTimeUtc);
        Log.LogMessage(MessageImportance.High, $"OnnxQuantize: quantizing {item.ItemSpec} -> {request.Output}");
        Log.LogMessage(MessageImportance.Low, $"onnxvitq {request}");

        string host = DotnetHost is { Length: > 0 } h ? h : Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } p ? p : "dotnet";
        var start = new ProcessStartInfo(host)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = ProjectDirectory,
        };
        start.ArgumentList.Add("exec");
        start.ArgumentList.Add(tool);
        foreach (var a in request.Arguments) start.ArgumentList.Add(a);
        var errors = new List<string>();
        int exit;
        var clock = Stopwatch.StartNew();
        try
        {
            using var process = new Process { StartInfo = start };
            process.OutputDataReceived += (_, e) => { if (e.Data is { } line) Log.LogMessage(MessageImportance.Normal, line); };
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is not { } line) return;
                if (line.StartsWith("warning: ", StringComparison.Ordinal))
                    Log.LogWarning(null, ErrorCodes.ToolWarning, null, request.Model, 0, 0, 0, 0, line["warning: ".Length..]);
                else lock (errors) errors.Add(line);
            };
            process.Start();
            _running = process;
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            process.WaitForExit();
            exit = process.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Error(ErrorCodes.ToolNotFound, request.Model, $"cannot start '{host}' to run onnxvitq: {e.Message}");
            return false;
        }
        finally
        {
            _running = null;
        }
        if (exit == 0 && !_cancelled)
        {
            File.WriteAllText(stamp, fingerprint);
            Log.LogMessage(MessageImportance.High, $"OnnxQuantize: {item.ItemSpec} quantized in {clock.Elapsed.TotalSeconds:0.0} s");
            return true;
        }
        // No output this run wrote survives its failure (the tool writes atomically, so this is a
        // report or model it finished before failing); files it did not touch are left alone.
        foreach (var path in request.Outputs)
            if (File.Exists(path) && (!before.TryGetValue(path, out var time) || File.GetLastWriteTimeUtc(path) != time)) File.Delete(path);
        string message = errors.FirstOrDefault(l => l.StartsWith("error: ", StringComparison.Ordinal)) is { } first ? first["error: ".Length..]
            : errors.Count > 0 ? string.Join(" ", errors) : $"onnxvitq exited with code {exit}";
        string code = _cancelled ? ErrorCodes.QuantizationFailed : exit switch
        {
            1 => ErrorCodes.InvalidOptions,
            2 => ErrorCodes.QuantizationFailed,
            _ => ErrorCodes.ToolCrashed,
        };
        Error(code, request.Model, _cancelled ? "cancelled" : message);
        return false;
    }

    private void Error(string code, string file, string message) =>
        Log.LogError(null, code, null, file, 0, 0, 0, 0, message);

    /// <inheritdoc />
    public void Cancel()
    {
        _cancelled = true;
        try
        {
            _running?.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException) { } // already exited
    }
}
