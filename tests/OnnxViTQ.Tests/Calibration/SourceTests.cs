using OnnxViTQ.Data;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Calibration;

public class SourceTests
{
    private static readonly ImagePreprocessing Fmnist = new(28, 28, 3, [0.286f, 0.286f, 0.286f], [0.353f, 0.353f, 0.353f], 1f);

    [Test]
    public void FloatNpyBatchesAreTheFileInOrder()
    {
        var source = new NpyTensorSource(Repo.Calibration, null);
        Assert.That((source.Count, source.SampleShape), Is.EqualTo((512, new[] { 3, 28, 28 })));
        var batches = source.ReadBatches(100, 250).ToList();
        Assert.That(batches.Select(b => b.Count), Is.EqualTo(new[] { 100, 100, 50 }));
        var (expected, _) = Ort.CalibrationSamples(250);
        Assert.That(batches.SelectMany(b => b.Data), Is.EqualTo(expected));
    }

    [Test]
    public void Uint8ImagesArePreprocessedWithMeanAndStd()
    {
        var source = new NpyTensorSource(Repo.EvalImages, Fmnist);
        var sample = source.ReadBatches(1, 1).Single().Data;
        var raw = NpyFile.Open(Repo.EvalImages).ReadBytes(0, 28 * 28);
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 28 * 28; i += 37)
                Assert.That(sample[c * 784 + i], Is.EqualTo((raw[i] / 255f - 0.286f) / 0.353f).Within(1e-6), $"channel {c} pixel {i}");
    }

    [Test]
    public void PngFolderMatchesTheSameImagesAsNpy()
    {
        // models/data/png holds the first 16 test images; decoding them must give the exact pixels
        var pngs = new ImageFolderSource(Repo.PngFolder, Fmnist);
        Assert.That(pngs.Count, Is.EqualTo(16));
        var fromPng = pngs.ReadBatches(16).Single().Data;
        foreach (var (file, i) in ImageFolderSource.FindImages(Repo.PngFolder).Select((f, i) => (f, i)))
        {
            var image = StbImageSharp.ImageResult.FromMemory(File.ReadAllBytes(file), StbImageSharp.ColorComponents.Grey);
            Assert.That(fromPng[i * 3 * 784 + 100], Is.EqualTo((image.Data[100] / 255f - 0.286f) / 0.353f).Within(1e-6));
        }
    }

    [Test]
    public void ResizeAndCenterCropFollowTimm()
    {
        // 8x4 image whose columns count 0..3: resize shorter side (4) to 4/0.5 = 8, crop 4x4 center
        var pre = new ImagePreprocessing(4, 4, 1, [0f], [1f], 0.5f);
        var pixels = new byte[8 * 4];
        for (int y = 0; y < 8; y++) for (int x = 0; x < 4; x++) pixels[y * 4 + x] = (byte)(x * 80);
        var output = new float[16];
        pre.Apply(pixels, 8, 4, 1, output);
        // resized to 16x8 (x scale 2): the center 4 columns (2..5) sample source x = 0.75, 1.25, 1.75, 2.25
        Assert.That(output[..4].Select(v => v * 255), Is.EqualTo(new[] { 60f, 100f, 140f, 180f }).Within(1e-3));
    }

    [Test]
    public void NpyFoldersAreStreamedAcrossFiles()
    {
        using var tmp = new TempDir();
        var (data, _) = Ort.CalibrationSamples(10);
        int sample = 3 * 28 * 28;
        NpyFile.Write(tmp.File("a.npy"), data.AsSpan(0, 3 * sample), 3, 3, 28, 28);
        NpyFile.Write(tmp.File("b.npy"), data.AsSpan(3 * sample, sample), 3, 28, 28); // one sample [C,H,W]
        NpyFile.Write(tmp.File("c.npy"), data.AsSpan(4 * sample, 6 * sample), 6, 3, 28, 28);

        var source = CalibrationSources.Open(tmp.Path, Fmnist);
        Assert.That(source, Is.InstanceOf<NpyFolderSource>());
        Assert.That(source.Count, Is.EqualTo(10));
        var batches = source.ReadBatches(4).ToList();
        Assert.That(batches.Select(b => b.Count), Is.EqualTo(new[] { 4, 4, 2 }));
        Assert.That(batches.SelectMany(b => b.Data), Is.EqualTo(data));
        Assert.That(source.ReadBatches(4, 6).Sum(b => b.Count), Is.EqualTo(6));
    }

    [Test]
    public void EmptyFolderIsAClearError()
    {
        using var tmp = new TempDir();
        var e = Assert.Throws<OnnxViTQException>(() => CalibrationSources.Open(tmp.Path, Fmnist))!;
        Assert.That(e.Message, Does.Contain(tmp.Path).And.Contain("contains no images"));
    }

    [Test]
    public void PreprocessingComesFromModelMetadata()
    {
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var p = ImagePreprocessing.ForModel(model, 3, 28, 28);
        Assert.That(p.Mean, Is.EqualTo(new[] { 0.286f, 0.286f, 0.286f }));
        Assert.That(p.Std, Is.EqualTo(new[] { 0.353f, 0.353f, 0.353f }));
        Assert.That(p.CropFraction, Is.EqualTo(1f));

        var plain = ImagePreprocessing.ForModel(TinyModels.MatMul(), 3, 224, 224);
        Assert.That((plain.Mean, plain.CropFraction), Is.EqualTo((ImagePreprocessing.ImageNetMean, 0.875f)));
    }
}
