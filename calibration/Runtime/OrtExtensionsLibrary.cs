using Microsoft.ML.OnnxRuntime;

namespace OnnxViTQ.Runtime;

/// <summary>
/// ONNX Runtime Extensions (Microsoft.ML.OnnxRuntime.Extensions, domain <c>com.microsoft.extensions</c>):
/// its <c>DecodeImage</c> runs the image-bytes models <c>--embed-preprocessing</c> writes. Every
/// session this project creates registers it when its native library is present (the package puts
/// it under runtimes/&lt;rid&gt;/native/ for Linux, Windows and macOS).
/// </summary>
internal static class OrtExtensionsLibrary
{
    private static readonly Lazy<string?> Problem = new(() =>
    {
        try
        {
            using var options = new SessionOptions();
            options.RegisterOrtExtensions();
            return null;
        }
        catch (Exception e) when (e is DllNotFoundException or OnnxRuntimeException or EntryPointNotFoundException or TypeLoadException)
        {
            return $"the ONNX Runtime Extensions library cannot be loaded: {OrtRuntime.FirstLine(e.Message)}";
        }
    });

    /// <summary>Why image-bytes models cannot run here, or null when they can.</summary>
    public static string? Unavailable => Problem.Value;

    public static void RegisterIfAvailable(SessionOptions options)
    {
        if (Unavailable is null) options.RegisterOrtExtensions();
    }
}
