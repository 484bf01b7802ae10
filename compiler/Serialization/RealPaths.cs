using System.Runtime.InteropServices;

namespace OnnxViTQ.Serialization;

/// <summary>realpath(3): a path with every symbolic link and "." or ".." resolved (on Unix; the
/// full path elsewhere). Checks that a file lies inside a folder compare these, not the text the
/// model file wrote.</summary>
internal static class RealPaths
{
    public static string Of(string path)
    {
        string full = Path.GetFullPath(path);
        if (OperatingSystem.IsWindows()) return full;
        IntPtr resolved = realpath(full, IntPtr.Zero);
        if (resolved == IntPtr.Zero) return full;
        try
        {
            return Marshal.PtrToStringUTF8(resolved) ?? full;
        }
        finally
        {
            free(resolved);
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern IntPtr realpath([MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr resolved);

    [DllImport("libc")]
    private static extern void free(IntPtr pointer);
}
