using System.Security.Cryptography;
using System.Text;

namespace OnnxViTQ.Build;

/// <summary>
/// SHA-256 over everything a quantized model depends on: the model, every calibration file
/// (names and contents), recipe and evaluation files, the command line, and the tool's own
/// assemblies and native library (so a new tool version redoes the work). Contents, not
/// timestamps: a checkout or copy that touches files without changing them does not redo the
/// work, and an edit that keeps the timestamp still does.
/// </summary>
internal static class InputFingerprint
{
    public static string Compute(QuantizeRequest request, string toolDirectory)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string s) => sha.AppendData(Encoding.UTF8.GetBytes(s + "\n"));
        void FileContent(string path)
        {
            Text(path);
            using var stream = File.OpenRead(path);
            var buffer = new byte[1 << 20];
            int read;
            while ((read = stream.Read(buffer, 0, buffer.Length)) > 0) sha.AppendData(buffer, 0, read);
        }
        void FileOrFolder(string path)
        {
            if (File.Exists(path)) { FileContent(path); return; }
            Text("folder " + path);
            foreach (var f in Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
                FileContent(f);
        }

        Text("onnxvitq-build fingerprint v1");
        foreach (var a in request.Arguments) Text(a);
        FileContent(request.Model);
        // Its external data: the weights of a large model live there, not in the .onnx file.
        string modelFolder = Path.GetDirectoryName(request.Model)!;
        foreach (var location in ExternalDataFiles.ReferencedBy(request.Model))
            if (Path.Combine(modelFolder, location) is var data && File.Exists(data)) FileContent(data);
        FileOrFolder(request.Calibration);
        foreach (var extra in request.ExtraInputs) FileOrFolder(extra);
        foreach (var f in ToolFiles(toolDirectory)) FileContent(f);
        return Convert.ToHexString(sha.GetHashAndReset());
    }

    /// <summary>The files that make the tool's behaviour: its own assemblies and the runtime-ops library.</summary>
    private static IEnumerable<string> ToolFiles(string toolDirectory) =>
        Directory.Exists(toolDirectory)
            ? Directory.EnumerateFiles(toolDirectory)
                .Where(f => Path.GetFileName(f) is var n && (n.StartsWith("OnnxViTQ.", StringComparison.Ordinal) || n.StartsWith("onnxvitq", StringComparison.Ordinal) || n == "libonnxvitq_ops.so")
                            && !n.EndsWith(".pdb", StringComparison.Ordinal) && !n.EndsWith(".xml", StringComparison.Ordinal))
                .Order(StringComparer.Ordinal)
            : [];
}
