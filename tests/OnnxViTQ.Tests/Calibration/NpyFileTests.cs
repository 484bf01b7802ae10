using OnnxViTQ.Data;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Calibration;

public class NpyFileTests
{
    [Test]
    public void WriteThenReadRanges()
    {
        using var tmp = new TempDir();
        var data = Enumerable.Range(0, 24).Select(i => i * 0.5f).ToArray();
        NpyFile.Write(tmp.File("a.npy"), data.AsSpan(), 2, 3, 4);

        var f = NpyFile.Open(tmp.File("a.npy"));
        Assert.That(f.Shape, Is.EqualTo(new long[] { 2, 3, 4 }));
        Assert.That(f.DType, Is.EqualTo(NpyDType.Float32));
        Assert.That(f.DataOffset % 64, Is.Zero, "header padded to 64 bytes as NumPy does");
        var part = new float[5];
        f.ReadFloats(10, part);
        Assert.That(part, Is.EqualTo(data[10..15]));
    }

    [Test]
    public void ReadsFilesWrittenByNumPy()
    {
        var f = NpyFile.Open(Repo.EvalLabels);
        Assert.That((f.DType, f.Shape.Count, f.Shape[0]), Is.EqualTo((NpyDType.Int64, 1, 2000L)));
        Assert.That(f.ReadAllInt64().Distinct().Order(), Is.EqualTo(Enumerable.Range(0, 10).Select(i => (long)i)));
        var images = NpyFile.Open(Repo.EvalImages);
        Assert.That((images.DType, images.ShapeText), Is.EqualTo((NpyDType.UInt8, "(2000, 28, 28)")));
    }

    [Test]
    public void RejectsNonNpyAndTruncatedFiles()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("text.npy"), "hello");
        Assert.That(Assert.Throws<OnnxViTQException>(() => NpyFile.Open(tmp.File("text.npy")))!.Message, Does.Contain("not a .npy file"));

        NpyFile.Write(tmp.File("full.npy"), new float[100].AsSpan(), 100);
        var bytes = File.ReadAllBytes(tmp.File("full.npy"));
        File.WriteAllBytes(tmp.File("cut.npy"), bytes[..^40]);
        Assert.That(Assert.Throws<OnnxViTQException>(() => NpyFile.Open(tmp.File("cut.npy")))!.Message, Does.Contain("truncated"));
    }

    /// <summary>Python 2's NumPy wrote the shape's longs as "10L".</summary>
    [Test]
    public void ReadsPython2Headers()
    {
        using var tmp = new TempDir();
        string path = tmp.File("py2.npy");
        File.WriteAllBytes(path, NpyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }", new byte[24]));
        Assert.That(NpyFile.Open(path).Shape, Is.EqualTo(new long[] { 2, 3 }));
    }

    /// <summary>Headers claim sizes: a version-2 header length of 4 GiB used to be allocated (or
    /// overflow an int, exit 70) before the file was looked at; a shape whose product wraps, or
    /// a negative entry, got past the truncation check.</summary>
    [Test]
    public void ClaimedSizesAreCheckedAgainstTheFileFirst()
    {
        using var tmp = new TempDir();
        string huge = tmp.File("huge-header.npy");
        var bytes = NpyBytes(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", new byte[4]);
        bytes[8] = bytes[9] = bytes[10] = bytes[11] = 0xFF;
        File.WriteAllBytes(huge, bytes);
        Assert.That(Assert.Throws<OnnxViTQException>(() => NpyFile.Open(huge))!.Message, Does.Contain("claims a 4294967295-byte .npy header"));

        string wraps = tmp.File("wraps.npy");
        File.WriteAllBytes(wraps, NpyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4), }", new byte[4]));
        Assert.That(Assert.Throws<OnnxViTQException>(() => NpyFile.Open(wraps))!.Message, Does.Contain("is truncated: shape (4294967296, 4294967296, 4)"));

        string negative = tmp.File("negative.npy");
        File.WriteAllBytes(negative, NpyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 4), }", new byte[16]));
        Assert.That(Assert.Throws<OnnxViTQException>(() => NpyFile.Open(negative))!.Message, Does.Contain("shape entry '-1' that is not a non-negative integer"));
    }

    /// <summary>A .npy file of format <paramref name="major"/> with <paramref name="dict"/> as its header.</summary>
    private static byte[] NpyBytes(int major, string dict, byte[] data)
    {
        int prefix = major == 1 ? 10 : 12;
        string header = dict + new string(' ', (64 - (prefix + dict.Length + 1) % 64) % 64) + "\n";
        var bytes = new List<byte> { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)major, 0 };
        bytes.AddRange(major == 1 ? BitConverter.GetBytes((ushort)header.Length) : BitConverter.GetBytes((uint)header.Length));
        bytes.AddRange(System.Text.Encoding.Latin1.GetBytes(header));
        bytes.AddRange(data);
        return [.. bytes];
    }
}
