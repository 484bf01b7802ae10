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
}
