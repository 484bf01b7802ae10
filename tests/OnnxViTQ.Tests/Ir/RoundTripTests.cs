using Google.Protobuf;
using Onnx;
using OnnxViTQ.Data;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Ir;

/// <summary>load → save of every reference model is lossless.</summary>
public class RoundTripTests
{
    private static IEnumerable<string> Models => Repo.ReferenceModels;

    [TestCaseSource(nameof(Models))]
    public void OnnxRuntimeOutputsAreBitIdenticalAfterLoadAndSave(string file)
    {
        string path = Repo.Model(file);
        var (x, shape) = Ort.CalibrationSamples(8);
        using var tmp = new TempDir();
        OnnxModelWriter.Save(OnnxModelReader.Load(path), tmp.File("roundtrip.onnx"));

        var before = Ort.RunFile(path, "pixel_values", x, shape);
        var after = Ort.RunFile(tmp.File("roundtrip.onnx"), "pixel_values", x, shape);

        Assert.That(after, Has.Length.EqualTo(before.Length));
        for (int i = 0; i < before.Length; i++)
            Assert.That(after[i].Select(BitConverter.SingleToInt32Bits), Is.EqualTo(before[i].Select(BitConverter.SingleToInt32Bits)), $"output {i} differs");
    }

    [TestCaseSource(nameof(Models))]
    public void WrittenProtoEqualsTheOriginalFieldByField(string file)
    {
        string path = Repo.Model(file);
        var original = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        var written = ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(OnnxModelReader.Load(path)));

        // value_info is written in node order; the exporter's order may differ. Compare it as a set.
        Assert.That(written.Graph.ValueInfo.OrderBy(v => v.Name, StringComparer.Ordinal),
            Is.EqualTo(original.Graph.ValueInfo.OrderBy(v => v.Name, StringComparer.Ordinal)));
        original.Graph.ValueInfo.Clear();
        written.Graph.ValueInfo.Clear();
        Assert.That(written.Graph.Node, Is.EqualTo(original.Graph.Node));
        Assert.That(written.Graph.Initializer, Is.EqualTo(original.Graph.Initializer));
        Assert.That(written, Is.EqualTo(original));
    }

    [TestCaseSource(nameof(Models))]
    public void SavingIsDeterministic(string file)
    {
        var once = OnnxModelWriter.ToBytes(OnnxModelReader.Load(Repo.Model(file)));
        var twice = OnnxModelWriter.ToBytes(OnnxModelReader.Parse(once));
        Assert.That(twice, Is.EqualTo(once));
    }

    /// <summary>The committed export computes what the PyTorch module computed: golden logits
    /// saved by tools/zoo for the first 16 test images, which are also committed as PNG files
    /// (models/data/png) and go through the CLI's image decoding and preprocessing here.</summary>
    [TestCaseSource(nameof(Models))]
    public void ExportMatchesPyTorchLogits(string file)
    {
        string family = file.Split('.')[0];
        var golden = NpyFile.Open(Repo.Model($"{family}.golden_logits.npy"));
        int n = (int)golden.Shape[0], classes = (int)golden.Shape[1];
        var expected = new float[n * classes];
        golden.ReadFloats(0, expected);

        var model = OnnxModelReader.Load(Repo.Model(file));
        var images = new ImageFolderSource(Repo.PngFolder, ImagePreprocessing.ForModel(model, 3, 28, 28));
        Assert.That(images.Count, Is.EqualTo(n));
        var batch = images.ReadBatches(n).Single();
        var logits = Ort.RunFile(Repo.Model(file), "pixel_values", batch.Data, [n, 3, 28, 28])[0];

        Assert.That(logits, Is.EqualTo(expected).Within(2e-4));
    }
}
