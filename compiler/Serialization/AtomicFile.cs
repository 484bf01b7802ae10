namespace OnnxViTQ.Serialization;

/// <summary>
/// Writes files so that a reader never sees a partial file and a failed write leaves the old
/// file (or nothing) in place: content goes to a temporary file in the target folder, which is
/// renamed over the target only after it is complete.
/// </summary>
internal static class AtomicFile
{
    /// <summary>Writes several files as one step: all temporaries first, then the renames in
    /// order (put the file that makes the others reachable, e.g. the model, last).</summary>
    public static void WriteAll(IReadOnlyList<(string Path, Action<Stream> Write)> files)
    {
        var temps = new List<string>();
        try
        {
            foreach (var (path, write) in files)
            {
                string full = Path.GetFullPath(path);
                string dir = Path.GetDirectoryName(full)!;
                if (!Directory.Exists(dir)) throw new OnnxViTQException($"output folder '{dir}' does not exist");
                string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
                temps.Add(temp);
                using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
                {
                    write(stream);
                    stream.Flush(flushToDisk: true);
                }
            }
            for (int i = 0; i < files.Count; i++)
            {
                File.Move(temps[i], Path.GetFullPath(files[i].Path), overwrite: true);
                temps[i] = "";
            }
        }
        finally
        {
            foreach (var t in temps)
                if (t.Length > 0 && File.Exists(t)) File.Delete(t);
        }
    }

    public static void Write(string path, Action<Stream> write) => WriteAll([(path, write)]);
}
