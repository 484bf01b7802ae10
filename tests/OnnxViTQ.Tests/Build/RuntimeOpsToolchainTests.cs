using System.Diagnostics;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Build;

/// <summary>
/// runtime-ops/RuntimeOps.targets without cmake or a C++ compiler: a developer's build says so in
/// one line and goes on (portable and ort output need no library); under CI (<c>CI=true</c>) the
/// same build fails, so that CI cannot pass without building and running the kernels. The probe
/// target runs in a real MSBuild with a PATH that holds only <c>dotnet</c> and <c>sh</c>.
/// </summary>
[NonParallelizable]
public class RuntimeOpsToolchainTests
{
    private static (int Exit, string Output) Probe(bool ci)
    {
        using var bin = new TempDir();
        string dotnet = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "/usr/bin/dotnet";
        File.CreateSymbolicLink(Path.Combine(bin.Path, "dotnet"), dotnet);
        File.CreateSymbolicLink(Path.Combine(bin.Path, "sh"), "/bin/sh");
        var start = new ProcessStartInfo(Path.Combine(bin.Path, "dotnet"))
        {
            WorkingDirectory = Repo.Root, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in new[] { "msbuild", Path.Combine("calibration", "OnnxViTQ.Calibration.csproj"), "-t:ProbeRuntimeOpsToolchain", "-nologo", "-nodeReuse:false" })
            start.ArgumentList.Add(a);
        // The test host runs under `dotnet test`: its MSBuild variables would steer the child build.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList()) start.Environment.Remove(key);
        start.Environment["PATH"] = bin.Path;
        start.Environment["CI"] = ci ? "true" : "false";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("dotnet msbuild -t:ProbeRuntimeOpsToolchain did not finish in 3 min");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    [Test]
    public void WithoutCMakeADeveloperBuildGoesOnAndSaysSo()
    {
        var (exit, output) = Probe(ci: false);
        Assert.That(exit, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("runtime-ops: not built (cmake or a C++17 compiler is missing)"));
    }

    [Test]
    public void WithoutCMakeACiBuildFails()
    {
        var (exit, output) = Probe(ci: true);
        Assert.That(exit, Is.Not.EqualTo(0), output);
        Assert.That(output, Does.Contain("runtime-ops: CI=true and cmake or a C++17 compiler is missing"));
    }
}
