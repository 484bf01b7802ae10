namespace OnnxViTQ.Runtime;

/// <summary>What a latency figure depends on besides the model: the CPU, the core count, the ONNX
/// Runtime version and the native kernel path. Printed beside every timing.</summary>
internal static class MachineInfo
{
    public static string CpuName()
    {
        try
        {
            var line = File.Exists("/proc/cpuinfo") ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal)) : null;
            return line is null ? "unknown CPU" : line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { return "unknown CPU"; }
    }

    public static string OrtVersion => typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetName().Version?.ToString() ?? "unknown";

    /// <summary>The native kernel path, or why there is none.</summary>
    public static string NativeKernelPath => NativeOps.IsAvailable ? NativeOps.KernelPath : $"none ({NativeOps.Unavailable})";
}
