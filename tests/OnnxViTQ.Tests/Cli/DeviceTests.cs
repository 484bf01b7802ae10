using OnnxViTQ.Cli;
using OnnxViTQ.Data;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Cli;

/// <summary>
/// <c>--device</c>: the CPU path in any build; a CUDA device that this build or machine cannot use
/// fails at once — one line naming what is missing, exit 2, nothing written — and, where a GPU and
/// the GPU build are present, calibration on CUDA gives the plan calibration on the CPU gives.
/// </summary>
[NonParallelizable]
public class DeviceTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => Support.Cli.Run(args);

    /// <summary>Why CUDA cannot be used here (the build or the machine), or null when it can.</summary>
    private static string? CudaUnavailable()
    {
        try
        {
            new ExecutionDevice(true, 0).EnsureAvailable();
            return null;
        }
        catch (OnnxViTQException e)
        {
            return e.Message;
        }
    }

    [Test]
    public void DevicesParse()
    {
        Assert.That(ExecutionDevice.Parse("cpu"), Is.EqualTo(ExecutionDevice.Cpu));
        Assert.That(ExecutionDevice.Parse("CUDA"), Is.EqualTo(new ExecutionDevice(true, 0)));
        Assert.That(ExecutionDevice.Parse("cuda:3").ToString(), Is.EqualTo("cuda:3"));
        var e = Assert.Throws<OnnxViTQException>(() => ExecutionDevice.Parse("tpu"))!;
        Assert.That(e.Message, Is.EqualTo("unknown device 'tpu'; devices: cpu, cuda, cuda:N"));
    }

    [Test]
    public void TheCpuDeviceQuantizes()
    {
        using var tmp = new TempDir();
        var r = Run("quantize", Repo.Model("vit.opset17.onnx"), "-o", tmp.File("q.onnx"), "--calib", Repo.Calibration, "--samples", "16", "--device", "cpu");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Err);
        Assert.That(File.Exists(tmp.File("q.onnx")));
    }

    /// <summary>Where CUDA cannot run (the CPU build: no CUDA provider; the GPU build without CUDA 13:
    /// the library ONNX Runtime could not load), quantize, eval and bench refuse at once.</summary>
    [Test]
    public void AnUnusableCudaDeviceFailsAtOnceAndWritesNothing()
    {
        if (CudaUnavailable() is null) Assert.Ignore("CUDA is usable on this machine: the refusal cannot be shown here");
        using var tmp = new TempDir();
        var r = Run("quantize", Repo.Model("vit.opset17.onnx"), "-o", tmp.File("q.onnx"), "--calib", Repo.Calibration, "--device", "cuda");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.BadInput), r.Err);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), r.Err);
        Assert.That(lines[0], Does.StartWith("error: --device cuda:0 "));
        if (!ExecutionDevice.GpuBuild)
            Assert.That(lines[0], Does.Contain("needs the GPU build").And.Contain("-p:OnnxRuntimeFlavor=Gpu"));
        else
            Assert.That(lines[0], Does.Contain("cannot be used: ONNX Runtime could not load CUDA: ").And.Contain(".so"), "names the library ONNX Runtime could not load");
        Assert.That(r.Out, Does.Not.Contain("Quantizing"), "refused before any work");
        Assert.That(Directory.EnumerateFiles(tmp.Path), Is.Empty, "nothing written");

        var eval = Run("eval", Repo.Model("vit.opset17.onnx"), "--data", Repo.EvalImages, "--labels", Repo.EvalLabels, "--device", "cuda:1");
        Assert.That(eval.Code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(eval.Err, Does.StartWith("error: --device cuda:1 "));
        var bench = Run("bench", Repo.Model("vit.opset17.onnx"), "--device", "cuda");
        Assert.That(bench.Code, Is.EqualTo(ExitCodes.BadInput));
        Assert.That(bench.Err, Does.StartWith("error: --device cuda:0 "));

        var api = Assert.Throws<OnnxViTQException>(() => OnnxQuantizer.QuantizeFile(Repo.Model("vit.opset17.onnx"), Repo.Calibration, tmp.File("api.onnx"),
            new QuantizationOptions { Device = "cuda" }))!;
        Assert.That(api.Message, Does.StartWith("--device cuda:0 "));
        Assert.That(File.Exists(tmp.File("api.onnx")), Is.False);
    }

    /// <summary>Calibration on CUDA and on the CPU give the same plan within float tolerance (the
    /// devices sum in different orders). Needs a GPU with CUDA 13 and the GPU build.</summary>
    [Test]
    public void CudaCalibrationGivesTheCpuPlan()
    {
        if (CudaUnavailable() is { } why) Assert.Ignore($"no usable CUDA device here (optional hardware): {why}");
        QuantizationResult Quantize(string device)
        {
            var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
            return Quantizer.Quantize(model, "vit", new NpyTensorSource(Repo.Calibration, null),
                new QuantizationOptions { Recipe = "adfq", Bits = BitWidths.Parse("W4A4"), CalibrationSamples = 128, Device = device });
        }
        var cpu = Quantize("cpu");
        var cuda = Quantize("cuda");
        Assert.That(cuda.Plan.Sites.Count, Is.EqualTo(cpu.Plan.Sites.Count));
        for (int i = 0; i < cpu.Plan.Sites.Count; i++)
        {
            var (a, b) = (cpu.Plan.Sites[i], cuda.Plan.Sites[i]);
            Assert.That(b.Parameters?.Kind, Is.EqualTo(a.Parameters?.Kind), a.Name);
            var other = b.Parameters!.Describe();
            foreach (var (key, value) in a.Parameters!.Describe())
                switch (value)
                {
                    case float f:
                        Assert.That((float)other[key], Is.EqualTo(f).Within(1e-3).Percent, $"{a.Name}.{key}");
                        break;
                    case IReadOnlyList<float> list:
                        Assert.That((IReadOnlyList<float>)other[key], Is.EqualTo(list).Within(1e-3).Percent, $"{a.Name}.{key}");
                        break;
                }
        }
    }
}
