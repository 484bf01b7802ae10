using System.Text;
using System.Text.RegularExpressions;

// The MSBuild task compiles this file too; its copy lives in its own namespace so that the tests,
// which see both assemblies' internals, name one type.
#if ONNXVITQ_BUILD_TASK
namespace OnnxViTQ.Build;
#else
namespace OnnxViTQ.Serialization;
#endif

/// <summary>
/// External data files, found without parsing a whole model (also compiled into the MSBuild task,
/// which does not load the compiler): the ones <c>OnnxModelWriter.Save</c> leaves beside a
/// model it wrote, and the ones any ONNX file references.
/// </summary>
internal static class ExternalDataFiles
{
    /// <summary>"&lt;name&gt;.&lt;16 hex digits&gt;.data" (and "&lt;name&gt;.data" of earlier versions) beside
    /// <paramref name="modelPath"/>, sorted.</summary>
    public static IReadOnlyList<string> Of(string modelPath)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(modelPath))!, name = Path.GetFileName(modelPath);
        if (!Directory.Exists(folder)) return [];
        var pattern = new Regex($"^{Regex.Escape(name)}(\\.[0-9a-f]{{16}})?\\.data$");
        return Directory.EnumerateFiles(folder).Where(f => pattern.IsMatch(Path.GetFileName(f))).Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>Whether <paramref name="path"/> is (or would be) an external data file of <paramref name="modelPath"/>.</summary>
    public static bool IsDataFileOf(string path, string modelPath) =>
        string.Equals(Path.GetDirectoryName(Path.GetFullPath(path)), Path.GetDirectoryName(Path.GetFullPath(modelPath)), StringComparison.Ordinal)
        && new Regex($"^{Regex.Escape(Path.GetFileName(modelPath))}(\\.[0-9a-f]{{16}})?\\.data$").IsMatch(Path.GetFileName(path));

    /// <summary>
    /// The distinct external-data locations an ONNX file's tensors name, relative to its folder:
    /// every serialized <c>StringStringEntryProto { key: "location", value: … }</c> (field 1 "location",
    /// then field 2 with a varint length). A scan of the bytes, so it reads any model, however large.
    /// </summary>
    public static IReadOnlyList<string> ReferencedBy(string modelPath)
    {
        var bytes = File.ReadAllBytes(modelPath);
        ReadOnlySpan<byte> key = [0x0A, 0x08, (byte)'l', (byte)'o', (byte)'c', (byte)'a', (byte)'t', (byte)'i', (byte)'o', (byte)'n', 0x12];
        var found = new SortedSet<string>(StringComparer.Ordinal);
        var span = bytes.AsSpan();
        for (int at = span.IndexOf(key); at >= 0;)
        {
            int p = at + key.Length;
            ulong length = 0;
            int shift = 0;
            while (p < span.Length && shift < 35)
            {
                byte b = span[p++];
                length |= (ulong)(b & 0x7F) << shift;
                shift += 7;
                if ((b & 0x80) == 0) break;
            }
            if (length > 0 && length <= 4096 && p + (int)length <= span.Length)
                found.Add(Encoding.UTF8.GetString(span.Slice(p, (int)length)));
            int next = span[(at + 1)..].IndexOf(key);
            at = next < 0 ? -1 : at + 1 + next;
        }
        return [.. found];
    }
}
