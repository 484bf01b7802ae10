using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;

namespace OnnxViTQ.Runtime;

/// <summary>
/// The custom-op library of <c>runtime-ops/</c> (<c>libonnxvitq_ops.so</c>, domain
/// <c>com.onnxvitq</c>), built by <c>dotnet build</c> and copied beside the assemblies. Every
/// session this project creates registers it when it is present, so calibration, evaluation and
/// benchmarks run native-format models. <c>ONNXVITQ_OPS_LIBRARY</c> points at another build.
/// </summary>
internal static class NativeOps
{
    public const string Domain = "com.onnxvitq";
    public const string FileName = "libonnxvitq_ops.so";

    /// <summary>Where the library is looked for: <c>ONNXVITQ_OPS_LIBRARY</c>, else beside the
    /// assemblies (this repository's builds, the tool), else where NuGet puts the OnnxViTQ
    /// package's native asset in a portable application (<c>runtimes/linux-x64/native/</c>).</summary>
    public static string LibraryPath
    {
        get
        {
            if (Environment.GetEnvironmentVariable("ONNXVITQ_OPS_LIBRARY") is { Length: > 0 } path) return path;
            string beside = Path.Combine(AppContext.BaseDirectory, FileName);
            string rid = $"linux-{RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant()}";
            string package = Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native", FileName);
            return !File.Exists(beside) && File.Exists(package) ? package : beside;
        }
    }

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
    public static unsafe string KernelPath => Marshal.PtrToStringUTF8(((delegate* unmanaged<IntPtr>)Export("OnnxViTQOpsKernelPath"))()) ?? "";

    /// <summary>The library's own declaration of its ops, one line per input, output and attribute
    /// (the format of <see cref="NativeOpSchema.Listing"/>).</summary>
    public static unsafe string Schemas => Marshal.PtrToStringUTF8(((delegate* unmanaged<IntPtr>)Export("OnnxViTQOpsSchemas"))()) ?? "";

    /// <summary>Paths this CPU supports, fastest first.</summary>
    public static unsafe string SupportedPaths => Marshal.PtrToStringUTF8(((delegate* unmanaged<IntPtr>)Export("OnnxViTQOpsSupportedPaths"))()) ?? "";

    /// <summary>Register-only int8 VNNI throughput of one core (GOPS, 2 ops per multiply-add),
    /// measured for <paramref name="seconds"/> on the calling thread; 0 without AVX-512 VNNI.</summary>
    public static unsafe double VnniPeakGops(double seconds) => ((delegate* unmanaged<double, double>)Export("OnnxViTQOpsVnniPeakGops"))(seconds);

    /// <summary>Register-only AVX2 throughput of one core (GOPS, 2 ops per multiply-add) for
    /// <paramref name="kind"/>: 0 = vpmaddwd (exact int16, the native AVX2 GEMM), 1 = vpmaddubsw
    /// (saturating u8×s8, ONNX Runtime's AVX2 kernel), 2 = FP32 FMA; 0 without AVX2.</summary>
    public static unsafe double Avx2PeakGops(double seconds, int kind) => ((delegate* unmanaged<double, int, double>)Export("OnnxViTQOpsAvx2PeakGops"))(seconds, kind);

    private static readonly Lazy<IntPtr> Library = new(() =>
    {
        EnsureAvailable("calling into the native library");
        return NativeLibrary.Load(LibraryPath);
    });

    private static IntPtr Export(string name) => NativeLibrary.GetExport(Library.Value, name);
}
