using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;

namespace OnnxViTQ.Runtime;

/// <summary>
/// The custom-op library of <c>runtime-ops/</c> (<c>libonnxvitq_ops.so</c>, domain
/// <c>com.onnxvitq</c>), built by <c>dotnet build</c> and copied beside the assemblies. Every
/// session this project creates registers it when it is present, so calibration, evaluation and
/// benchmarks run native-format models. <c>ONNXVITQ_OPS_LIBRARY</c> points at another build.
/// </summary>
public static class NativeOps
{
    public const string Domain = "com.onnxvitq";
    public const string FileName = "libonnxvitq_ops.so";

    /// <summary>Where the library is looked for.</summary>
    public static string LibraryPath =>
        Environment.GetEnvironmentVariable("ONNXVITQ_OPS_LIBRARY") is { Length: > 0 } path ? path : Path.Combine(AppContext.BaseDirectory, FileName);

    public static bool IsAvailable => OperatingSystem.IsLinux() && File.Exists(LibraryPath);

    /// <summary>Why native models cannot run here, or null when they can.</summary>
    public static string? Unavailable =>
        !OperatingSystem.IsLinux() ? "the native runtime ops are built for Linux only"
        : !File.Exists(LibraryPath) ? $"{LibraryPath} does not exist (it is built by `dotnet build` when cmake and a C++17 compiler are installed)"
        : null;

    /// <summary>Registers the library with <paramref name="options"/> when it is present.</summary>
    public static void RegisterIfAvailable(SessionOptions options)
    {
        if (IsAvailable) options.RegisterCustomOpLibrary(LibraryPath);
    }

    /// <summary>Fails with a clear message unless the library is present.</summary>
    public static void EnsureAvailable(string purpose)
    {
        if (Unavailable is { } why) throw new OnnxViTQException($"{purpose} needs the native runtime ops: {why}");
    }

    /// <summary>The kernel path new sessions use here ("avx512vnni", "avx2" or "scalar"; the
    /// environment variable ONNXVITQ_ISA forces one), or the reason none can be used.</summary>
    public static string KernelPath => Native.Call(Native.KernelPath);

    /// <summary>Paths this CPU supports, fastest first.</summary>
    public static string SupportedPaths => Native.Call(Native.SupportedPaths);

    /// <summary>Register-only int8 VNNI throughput of one core (GOPS, 2 ops per multiply-add),
    /// measured for <paramref name="seconds"/> on the calling thread; 0 without AVX-512 VNNI.</summary>
    public static unsafe double VnniPeakGops(double seconds)
    {
        var fn = (delegate* unmanaged<double, double>)NativeLibrary.GetExport(Native.Library, "OnnxViTQOpsVnniPeakGops");
        return fn(seconds);
    }

    private static class Native
    {
        public static IntPtr Library => Handle.Value;

        private static readonly Lazy<IntPtr> Handle = new(() =>
        {
            EnsureAvailable("reading the kernel path");
            return NativeLibrary.Load(LibraryPath);
        });

        public static string KernelPath(IntPtr h) => Call(h, "OnnxViTQOpsKernelPath");
        public static string SupportedPaths(IntPtr h) => Call(h, "OnnxViTQOpsSupportedPaths");

        public static string Call(Func<IntPtr, string> f) => f(Handle.Value);

        private static unsafe string Call(IntPtr h, string export)
        {
            var fn = (delegate* unmanaged<IntPtr>)NativeLibrary.GetExport(h, export);
            return Marshal.PtrToStringUTF8(fn()) ?? "";
        }
    }
}
