using Microsoft.ML.OnnxRuntime;

namespace OnnxViTQ.Runtime;

/// <summary>
/// Where ONNX Runtime runs the sessions the compiler creates — calibration, plan checks, searches,
/// evaluation, benchmarks: the CPU (<c>cpu</c>) or a CUDA device (<c>cuda</c>, <c>cuda:N</c>).
/// CUDA needs the GPU build (<c>-p:OnnxRuntimeFlavor=Gpu</c>, Microsoft.ML.OnnxRuntime.Gpu) and
/// CUDA 13 with cuDNN on the machine; the CPU provider stays registered behind it, so nodes the
/// CUDA provider lacks — the com.onnxvitq ops of <c>--format native</c> models, which are CPU
/// kernels — run on the CPU. The device is ambient for a run (<see cref="Use"/>): passes create
/// sessions through <see cref="OrtRuntime"/> without carrying it.
/// </summary>
internal sealed record ExecutionDevice(bool Cuda, int Id)
{
    public static ExecutionDevice Cpu { get; } = new(false, 0);

    public override string ToString() => Cuda ? $"cuda:{Id}" : "cpu";

    /// <summary><c>cpu</c>, <c>cuda</c> (device 0) or <c>cuda:N</c>.</summary>
    public static ExecutionDevice Parse(string? text)
    {
        string t = (text ?? "cpu").Trim().ToLowerInvariant();
        if (t == "cpu") return Cpu;
        if (t == "cuda") return new(true, 0);
        if (t.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(t[5..], out int id) && id >= 0) return new(true, id);
        throw new OnnxViTQException($"unknown device '{text}'; devices: cpu, cuda, cuda:N");
    }

    private static readonly AsyncLocal<ExecutionDevice?> Ambient = new();

    /// <summary>The device sessions created now use (the CPU unless a run chose another).</summary>
    public static ExecutionDevice Current => Ambient.Value ?? Cpu;

    /// <summary>Makes <paramref name="device"/> the device of the sessions created until the result is disposed.</summary>
    public static IDisposable Use(ExecutionDevice device)
    {
        var previous = Ambient.Value;
        Ambient.Value = device;
        return new Restore(previous);
    }

    private sealed class Restore(ExecutionDevice? previous) : IDisposable
    {
        public void Dispose() => Ambient.Value = previous;
    }

    /// <summary>Adds this device's execution provider to <paramref name="options"/> (nothing for the CPU).</summary>
    public void AddTo(SessionOptions options)
    {
        if (!Cuda) return;
        try
        {
            options.AppendExecutionProvider_CUDA(Id);
        }
        catch (EntryPointNotFoundException)
        {
            throw new OnnxViTQException($"--device {this} needs the GPU build: this build uses the CPU ONNX Runtime package " +
                                        "(build with -p:OnnxRuntimeFlavor=Gpu, or use --device cpu)");
        }
        catch (OnnxRuntimeException e)
        {
            // ONNX Runtime's exception only says "Failed to load shared library"; what is missing is
            // in dlopen's message for its CUDA provider library, which the same load reproduces.
            string why = ProviderLoadError() ?? OrtRuntime.FirstLine(e.Message);
            throw new OnnxViTQException($"--device {this} cannot be used: ONNX Runtime could not load CUDA: {why} (install CUDA 13 and cuDNN 9, or use --device cpu)");
        }
    }

    /// <summary>dlopen's message for ONNX Runtime's CUDA provider library (e.g. "libcublasLt.so.13:
    /// cannot open shared object file"), or null when it loads or is not found.</summary>
    private static string? ProviderLoadError()
    {
        const string provider = "libonnxruntime_providers_cuda.so";
        string rid = $"linux-{System.Runtime.InteropServices.RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant()}";
        foreach (var dir in new[] { AppContext.BaseDirectory, Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native") })
        {
            string path = Path.Combine(dir, provider);
            if (!File.Exists(path)) continue;
            try
            {
                System.Runtime.InteropServices.NativeLibrary.Free(System.Runtime.InteropServices.NativeLibrary.Load(path));
                return null;
            }
            catch (DllNotFoundException e)
            {
                // .NET's advice comes first; dlopen's own message is the last line.
                var lines = e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                return lines.Length > 1 ? lines[^1] : OrtRuntime.FirstLine(e.Message);
            }
        }
        return null;
    }

    /// <summary>Fails at once, with what is missing, unless sessions can run on this device — before
    /// anything is read or written.</summary>
    public void EnsureAvailable()
    {
        if (!Cuda) return;
        // ONNX Runtime also logs the failure on stderr; the one-line error below says it.
        var env = OrtEnv.Instance();
        var level = env.EnvLogLevel;
        env.EnvLogLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL;
        try
        {
            using var options = new SessionOptions();
            AddTo(options);
        }
        finally
        {
            env.EnvLogLevel = level;
        }
    }

    /// <summary>The GPU build's ONNX Runtime package is referenced (the CUDA provider is compiled in).</summary>
    public static bool GpuBuild
    {
        get
        {
            try
            {
                using var options = new SessionOptions();
                options.AppendExecutionProvider_CUDA(0);
                return true;
            }
            catch (EntryPointNotFoundException)
            {
                return false;
            }
            catch (OnnxRuntimeException)
            {
                return true; // compiled in, but CUDA itself is missing here
            }
        }
    }
}
