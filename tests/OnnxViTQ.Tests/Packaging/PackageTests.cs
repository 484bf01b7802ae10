using System.Diagnostics;
using System.Text;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Packaging;

/// <summary>
/// The three packages as users get them: a copy of the repository is packed (`dotnet pack` at its
/// root, a fresh build like a clone's), then the samples restore the packages from that local
/// folder and build, and the tool is installed from it. The packages get a version of their own
/// and consumers restore into a private package folder (the machine's global folder is only a
/// read-only fallback for third-party packages), so no cached OnnxViTQ package can stand in for
/// the one just packed.
/// </summary>
[NonParallelizable]
[Category("Packaging")]
public class PackageTests
{
    private TempDir _work = null!;
    private string _repo = "", _feed = "", _version = "", _packages = "";
    private string Sample => Path.Combine(_repo, "samples", "QuantizeAtBuild");
    private string SampleModelInObj => Path.Combine(Sample, "obj", "Debug", "net10.0", "onnxvitq", "vit.w8a8.onnx");
    private string SampleModelInBin => Path.Combine(Sample, "bin", "Debug", "net10.0", "models", "vit.w8a8.onnx");

    [OneTimeSetUp]
    public void PackACopyOfTheRepository()
    {
        _work = new TempDir();
        _repo = _work.File("repo");
        CopyRepository(Repo.Root, _repo);
        _version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}";
        _packages = _work.File("packages");
        var pack = Dotnet(_repo, ["pack", "OnnxViTQ.sln", "-c", "Release", $"-p:Version={_version}"], consumer: false, timeoutMinutes: 15);
        Assert.That(pack.Exit, Is.EqualTo(0), pack.Output);
        _feed = Path.Combine(_repo, "artifacts", "packages");
        var packages = Directory.GetFiles(_feed, "*.nupkg").Select(Path.GetFileName).Order().ToArray();
        Assert.That(packages, Is.EqualTo(new[] { $"OnnxViTQ.{_version}.nupkg", $"OnnxViTQ.Build.{_version}.nupkg", $"OnnxViTQ.Tool.{_version}.nupkg" }));
        Assert.That(Directory.GetFiles(_feed, "*.snupkg").Select(Path.GetFileName), Is.EquivalentTo(new[] { $"OnnxViTQ.{_version}.snupkg", $"OnnxViTQ.Tool.{_version}.snupkg" }), "symbols");
    }

    [OneTimeTearDown]
    public void Cleanup()
    {
        Dotnet(_work.Path, ["build-server", "shutdown"], consumer: false);
        _work.Dispose();
    }

    [Test, Order(1)]
    public void SampleBuildQuantizesTheModelIntoBin()
    {
        var build = Dotnet(Sample, ["build", $"-p:OnnxViTQVersion={_version}"]);
        Assert.That(build.Exit, Is.EqualTo(0), build.Output);
        Assert.That(build.Output, Does.Contain("OnnxQuantize: quantizing"));
        Assert.That(File.Exists(SampleModelInBin), build.Output);
        Assert.That(File.ReadAllBytes(SampleModelInBin), Is.EqualTo(File.ReadAllBytes(SampleModelInObj)));
        Assert.That(File.Exists(Path.ChangeExtension(SampleModelInObj, null) + ".report.html"), "HtmlReport=\"true\" writes the report beside the model");
        var run = Dotnet(Sample, ["bin/Debug/net10.0/QuantizeAtBuild.dll"], consumer: false);
        Assert.That(run.Exit, Is.EqualTo(0), run.Output);
        Assert.That(run.Output, Does.Contain("vit.w8a8.onnx: ").And.Contain("10 logits"), "the application runs the quantized model");
        Assert.That(run.Output, Does.Contain("vit.w8a8.image-bytes.onnx: class 9 for images/sample.png"),
            "and the image-bytes model on the PNG's bytes, with the Extensions library registered (0000_9.png is class 9)");
    }

    [Test, Order(2)]
    public void SecondBuildSkipsTheWork()
    {
        var written = File.GetLastWriteTimeUtc(SampleModelInObj);
        var build = Dotnet(Sample, ["build", $"-p:OnnxViTQVersion={_version}"]);
        Assert.That(build.Exit, Is.EqualTo(0), build.Output);
        Assert.That(build.Output, Does.Contain("is up to date, skipped"));
        Assert.That(build.Output, Does.Not.Contain("OnnxQuantize: quantizing"));
        Assert.That(File.GetLastWriteTimeUtc(SampleModelInObj), Is.EqualTo(written));

        var changed = Dotnet(Sample, ["build", $"-p:OnnxViTQVersion={_version}", "-p:SampleCalibrationSamples=32"]);
        Assert.That(changed.Exit, Is.EqualTo(0), changed.Output);
        Assert.That(changed.Output, Does.Contain("OnnxQuantize: quantizing"), "a changed option redoes the work");
        var back = Dotnet(Sample, ["build", $"-p:OnnxViTQVersion={_version}"]);
        Assert.That(back.Output, Does.Contain("OnnxQuantize: quantizing"), "and changing it back redoes it again");
    }

    [Test, Order(3)]
    public void ToolInstallsAndQuantizesByteForByteLikeTheBuild()
    {
        string tools = _work.File("tools");
        var install = Dotnet(_work.Path, ["tool", "install", "OnnxViTQ.Tool", "--version", _version, "--tool-path", tools, "--add-source", _feed]);
        Assert.That(install.Exit, Is.EqualTo(0), install.Output);
        string onnxvitq = Path.Combine(tools, "onnxvitq");

        var help = Run(onnxvitq, ["--help"], _work.Path);
        Assert.That(help.Exit, Is.EqualTo(0), help.Output);
        Assert.That(help.Output, Does.Contain("quantize").And.Contain("inspect").And.Contain("eval"));

        string output = _work.File("tool.onnx");
        var quantize = Run(onnxvitq, ["quantize", Repo.Model("vit.opset17.onnx"), "-o", output, "--calib", Repo.Calibration,
            "--recipe", "minmax", "--bits", "W8A8", "--samples", "64"], _work.Path);
        Assert.That(quantize.Exit, Is.EqualTo(0), quantize.Output);
        Assert.That(File.ReadAllBytes(output), Is.EqualTo(File.ReadAllBytes(SampleModelInObj)), "the MSBuild task and the CLI write the same bytes for the same options");
    }

    [Test, Order(4)]
    public void PublishCarriesTheQuantizedModel()
    {
        string publish = _work.File("publish");
        var result = Dotnet(Sample, ["publish", "-o", publish, $"-p:OnnxViTQVersion={_version}"]);
        Assert.That(result.Exit, Is.EqualTo(0), result.Output);
        Assert.That(File.ReadAllBytes(Path.Combine(publish, "models", "vit.w8a8.onnx")), Is.EqualTo(File.ReadAllBytes(SampleModelInObj)));
    }

    [Test, Order(5)]
    public void CorruptModelFailsTheBuildWithAnOvqCodeAndNoOutput()
    {
        // A second consumer beside the sample (same nuget.config) whose model is truncated.
        string project = Path.Combine(_repo, "samples", "Corrupt");
        Directory.CreateDirectory(project);
        File.Copy(Path.Combine(Sample, "QuantizeAtBuild.csproj"), Path.Combine(project, "Corrupt.csproj"));
        File.Copy(Path.Combine(Sample, "nuget.config"), Path.Combine(project, "nuget.config"));
        File.WriteAllText(Path.Combine(project, "Program.cs"), "System.Console.WriteLine();");
        var bytes = File.ReadAllBytes(Repo.Model("vit.opset17.onnx"));
        string corrupt = Path.Combine(project, "broken.onnx");
        File.WriteAllBytes(corrupt, bytes[..(bytes.Length / 3)]);

        var build = Dotnet(project, ["build", $"-p:OnnxViTQVersion={_version}", $"-p:SampleModel={corrupt}"]);
        Assert.That(build.Exit, Is.Not.EqualTo(0), build.Output);
        Assert.That(build.Output, Does.Contain("error OVQ0004").And.Contain("broken.onnx").And.Contain("not a valid ONNX model"));
        var leftovers = new[] { "obj", "bin" }.Select(d => Path.Combine(project, d)).Where(Directory.Exists)
            .SelectMany(d => Directory.EnumerateFiles(d, "*.onnx*", SearchOption.AllDirectories)).ToList();
        Assert.That(leftovers, Is.Empty, "no model, partial or stale, is left");
    }

    [Test, Order(6)]
    public void LibraryPackageQuantizesThroughThePublicApi()
    {
        string project = Path.Combine(_repo, "samples", "LibraryApi");
        var build = Dotnet(project, ["build", $"-p:OnnxViTQVersion={_version}"]);
        Assert.That(build.Exit, Is.EqualTo(0), build.Output);
        string output = _work.File("library.onnx");
        var run = Dotnet(project, ["bin/Debug/net10.0/LibraryApi.dll", Repo.Model("vit.opset17.onnx"), Repo.Calibration, output, Repo.EvalImages, Repo.EvalLabels], consumer: false);
        Assert.That(run.Exit, Is.EqualTo(0), run.Output);
        Assert.That(run.Output, Does.Contain("repq W8A8 Native: 38 nodes quantized on 64 samples"));
        Assert.That(run.Output, Does.Contain("top-1 on 500 samples"), "the native model runs: libonnxvitq_ops.so came with the package");
        Assert.That(File.Exists(Path.Combine(project, "bin", "Debug", "net10.0", "runtimes", "linux-x64", "native", "libonnxvitq_ops.so")));
    }

    /// <summary>Tracked and untracked-but-not-ignored files: what a clone (plus local edits) holds.</summary>
    private static void CopyRepository(string from, string to)
    {
        var list = Run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], from);
        Assert.That(list.Exit, Is.EqualTo(0), list.Output);
        foreach (var file in list.Output.Split('\0', StringSplitOptions.RemoveEmptyEntries))
        {
            string source = Path.Combine(from, file);
            if (!File.Exists(source)) continue; // deleted in the working tree
            string target = Path.Combine(to, file);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(source, target);
        }
    }

    private (int Exit, string Output) Dotnet(string directory, IReadOnlyList<string> args, bool consumer = true, int timeoutMinutes = 5)
    {
        var env = new Dictionary<string, string?>();
        var all = new List<string>(args);
        if (consumer)
        {
            string global = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } g ? g
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            env["NUGET_PACKAGES"] = _packages;
            if (args[0] is "build" or "publish") all.AddRange([$"-p:RestoreAdditionalProjectFallbackFolders={global}", "-nodeReuse:false"]);
        }
        else if (args[0] is "pack") all.Add("-nodeReuse:false");
        return Run("dotnet", all, directory, env, timeoutMinutes);
    }

    private static (int Exit, string Output) Run(string file, IReadOnlyList<string> args, string directory,
        IReadOnlyDictionary<string, string?>? env = null, int timeoutMinutes = 5)
    {
        var start = new ProcessStartInfo(file) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) start.ArgumentList.Add(a);
        // The test host runs under `dotnet test`: its MSBuild variables would steer the child builds.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList()) start.Environment.Remove(key);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (k, v) in env ?? new Dictionary<string, string?>()) start.Environment[k] = v;
        using var process = new Process { StartInfo = start };
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(TimeSpan.FromMinutes(timeoutMinutes)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', args)} did not finish in {timeoutMinutes} min:\n{output}");
        }
        process.WaitForExit();
        lock (output) return (process.ExitCode, output.ToString());
    }
}
