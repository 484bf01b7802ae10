using System.Collections;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
using OnnxViTQ.Build;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Build;

/// <summary>The MSBuild task run in-process against the onnxvitq built beside the tests (the
/// packaged flow, through a real `dotnet build`, is <c>Packaging.PackageTests</c>).</summary>
public class QuantizeOnnxModelsTaskTests
{
    private static string Tool => Path.Combine(AppContext.BaseDirectory, "onnxvitq.dll");

    private static (bool Ok, RecordingEngine Log, QuantizeOnnxModels Task) Run(string project, params ITaskItem[] models)
    {
        var engine = new RecordingEngine();
        var task = new QuantizeOnnxModels
        {
            BuildEngine = engine, Models = models, ProjectDirectory = project, OutputDirectory = "obj/onnxvitq", ToolPath = Tool,
        };
        return (task.Execute(), engine, task);
    }

    private static TaskItem Vit(string project, string model = "vit.onnx")
    {
        var item = new TaskItem(model);
        item.SetMetadata("Calibration", Repo.Calibration);
        item.SetMetadata("Samples", "32");
        return item;
    }

    [Test]
    public void QuantizesThenSkipsUntilAnInputChanges()
    {
        using var project = new TempDir();
        File.Copy(Repo.Model("vit.opset17.onnx"), project.File("vit.onnx"));
        var (ok, log, task) = Run(project.Path, Vit(project.Path));
        Assert.That(ok, Is.True, log.Text);
        string output = project.File("obj/onnxvitq/vit.quantized.onnx");
        Assert.That(task.QuantizedModels.Select(m => m.ItemSpec), Is.EqualTo(new[] { output }));
        Assert.That(task.QuantizedModels[0].GetMetadata("TargetPath"), Is.EqualTo("vit.quantized.onnx"));
        Assert.That(task.FilesWritten.Select(f => Path.GetFileName(f.ItemSpec)), Is.EquivalentTo(new[] { "vit.quantized.onnx", "vit.quantized.onnx.inputs" }));
        Assert.That(log.Text, Does.Contain("OnnxQuantize: quantizing vit.onnx"));
        var written = File.GetLastWriteTimeUtc(output);

        (ok, log, _) = Run(project.Path, Vit(project.Path));
        Assert.That(ok, Is.True, log.Text);
        Assert.That(log.Text, Does.Contain("vit.onnx is up to date, skipped"));
        Assert.That(File.GetLastWriteTimeUtc(output), Is.EqualTo(written), "the skipped run did not rewrite the model");

        var changed = Vit(project.Path);
        changed.SetMetadata("Bits", "W6A6");
        (ok, log, _) = Run(project.Path, changed);
        Assert.That(ok, Is.True, log.Text);
        Assert.That(log.Text, Does.Contain("OnnxQuantize: quantizing vit.onnx"), "an option changed");
    }

    [Test]
    public void CorruptModelIsOvq0004AndLeavesNoOutput()
    {
        using var project = new TempDir();
        var bytes = File.ReadAllBytes(Repo.Model("vit.opset17.onnx"));
        File.WriteAllBytes(project.File("cut.onnx"), bytes[..(bytes.Length / 3)]);
        var (ok, log, task) = Run(project.Path, Vit(project.Path, "cut.onnx"));
        Assert.That(ok, Is.False);
        Assert.That(log.Errors, Has.Count.EqualTo(1), log.Text);
        var e = log.Errors[0];
        Assert.That(e.Code, Is.EqualTo(ErrorCodes.QuantizationFailed));
        Assert.That(e.File, Is.EqualTo(project.File("cut.onnx")));
        Assert.That(e.Message, Does.Contain("not a valid ONNX model"));
        Assert.That(task.QuantizedModels, Is.Empty);
        Assert.That(Directory.Exists(project.File("obj/onnxvitq")) ? Directory.GetFiles(project.File("obj/onnxvitq")) : [], Is.Empty, "no partial output");
    }

    [Test]
    public void AnOptionTheToolRefusesIsAnError()
    {
        using var project = new TempDir();
        File.Copy(Repo.Model("vit.opset17.onnx"), project.File("vit.onnx"));
        var item = Vit(project.Path);
        item.SetMetadata("Bits", "W9A9");
        var (ok, log, _) = Run(project.Path, item);
        Assert.That(ok, Is.False);
        Assert.That(log.Errors.Single().Code, Is.EqualTo(ErrorCodes.QuantizationFailed));
        Assert.That(log.Errors.Single().Message, Does.Contain("W9A9"));
    }

    /// <summary>A model written with external data: its weights file is a quantized model item too,
    /// with a target path beside the model's, so the build copies it to bin/ and publish/.</summary>
    [Test]
    public void TheExternalDataFileTravelsWithTheModel()
    {
        using var project = new TempDir();
        File.Copy(Repo.Model("vit.opset17.onnx"), project.File("vit.onnx"));
        var item = Vit(project.Path);
        item.SetMetadata("ExternalData", "Always");
        item.SetMetadata("TargetPath", "models/vit.q.onnx");
        var (ok, log, task) = Run(project.Path, item);
        Assert.That(ok, Is.True, log.Text);
        Assert.That(task.QuantizedModels, Has.Length.EqualTo(2));
        var data = task.QuantizedModels[1];
        Assert.That(Path.GetFileName(data.ItemSpec), Does.Match(@"^vit\.quantized\.onnx\.[0-9a-f]{16}\.data$"));
        Assert.That(data.GetMetadata("TargetPath"), Is.EqualTo(Path.Combine("models", Path.GetFileName(data.ItemSpec))));
        Assert.That(task.FilesWritten.Select(f => f.ItemSpec), Does.Contain(data.ItemSpec));
    }

    /// <summary>A failed run removes only what it wrote: a report path naming a file the user had
    /// (here an unrelated notes file) is left as it was (it used to be deleted with the outputs).</summary>
    [Test]
    public void AFailedRunDeletesOnlyWhatItWrote()
    {
        using var project = new TempDir();
        File.Copy(Repo.Model("vit.opset17.onnx"), project.File("vit.onnx"));
        File.WriteAllText(project.File("notes.json"), "the user's own file");
        var item = Vit(project.Path);
        item.SetMetadata("Bits", "W9A9");
        item.SetMetadata("Report", "notes.json");
        var (ok, log, _) = Run(project.Path, item);
        Assert.That(ok, Is.False, log.Text);
        Assert.That(File.ReadAllText(project.File("notes.json")), Is.EqualTo("the user's own file"));
    }

    /// <summary>Report="vit.onnx" on the item for vit.onnx is refused before the tool runs, and the model survives.</summary>
    [Test]
    public void AReportPathNamingTheModelIsRefusedAndTheModelSurvives()
    {
        using var project = new TempDir();
        File.Copy(Repo.Model("vit.opset17.onnx"), project.File("vit.onnx"));
        long size = new FileInfo(project.File("vit.onnx")).Length;
        var item = Vit(project.Path);
        item.SetMetadata("Report", "vit.onnx");
        var (ok, log, _) = Run(project.Path, item);
        Assert.That(ok, Is.False);
        Assert.That(log.Errors.Single().Code, Is.EqualTo(ErrorCodes.InvalidOptions));
        Assert.That(log.Errors.Single().Message, Does.Contain("Report").And.Contain("would overwrite an input"));
        Assert.That(log.Text, Does.Not.Contain("quantizing"));
        Assert.That(new FileInfo(project.File("vit.onnx")).Length, Is.EqualTo(size));
    }

    [Test]
    public void MissingModelIsOvq0001WithoutRunningTheTool()
    {
        using var project = new TempDir();
        var (ok, log, _) = Run(project.Path, Vit(project.Path, "absent.onnx"));
        Assert.That(ok, Is.False);
        Assert.That(log.Errors.Single().Code, Is.EqualTo(ErrorCodes.ModelNotFound));
        Assert.That(log.Text, Does.Not.Contain("quantizing"));
    }

    /// <summary>An MSBuild engine that records what the task logs.</summary>
    private sealed class RecordingEngine : IBuildEngine
    {
        public List<BuildErrorEventArgs> Errors { get; } = [];
        private readonly List<string> _lines = [];
        public string Text { get { lock (_lines) return string.Join("\n", _lines); } }

        public void LogErrorEvent(BuildErrorEventArgs e)
        {
            lock (_lines)
            {
                Errors.Add(e);
                _lines.Add($"error {e.Code}: {e.File}: {e.Message}");
            }
        }

        public void LogWarningEvent(BuildWarningEventArgs e) { lock (_lines) _lines.Add($"warning {e.Code}: {e.Message}"); }
        public void LogMessageEvent(BuildMessageEventArgs e) { lock (_lines) _lines.Add(e.Message ?? ""); }
        public void LogCustomEvent(CustomBuildEventArgs e) { lock (_lines) _lines.Add(e.Message ?? ""); }
        public bool BuildProjectFile(string projectFileName, string[] targetNames, IDictionary globalProperties, IDictionary targetOutputs) => false;
        public bool ContinueOnError => false;
        public int LineNumberOfTaskNode => 0;
        public int ColumnNumberOfTaskNode => 0;
        public string ProjectFileOfTaskNode => "test.csproj";
    }
}
