using Google.Protobuf;
using Onnx;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Ir;

public class ExternalDataTests
{
    private static string ReferenceModel => Repo.Model("vit.opset17.onnx");

    [Test]
    public void ExternalDataIsWrittenReadBackAndRunByOnnxRuntime()
    {
        using var tmp = new TempDir();
        string path = tmp.File("external.onnx");
        OnnxModelWriter.Save(OnnxModelReader.Load(ReferenceModel), path, new OnnxWriteOptions { ExternalData = ExternalDataMode.Always });

        Assert.That(File.Exists(path + ".data"), "weights file");
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        Assert.That(proto.Graph.Initializer.Count(t => t.DataLocation == TensorProto.Types.DataLocation.External), Is.GreaterThan(10));
        Assert.That(new FileInfo(path).Length, Is.LessThan(new FileInfo(ReferenceModel).Length / 4), "weights left the model file");

        var (x, shape) = Ort.CalibrationSamples(4);
        var expected = Ort.RunFile(ReferenceModel, "pixel_values", x, shape)[0];
        Assert.That(Ort.RunFile(path, "pixel_values", x, shape)[0], Is.EqualTo(expected), "ONNX Runtime reads our external data");

        // and our reader reads it back into the same model
        var inline = OnnxModelWriter.ToBytes(OnnxModelReader.Load(path));
        Assert.That(Ort.Run(inline, "pixel_values", x, shape)[0], Is.EqualTo(expected));
    }

    [Test]
    public void AutoModeGoesExternalOnlyPastTheThreshold()
    {
        using var tmp = new TempDir();
        var model = OnnxModelReader.Load(ReferenceModel);
        OnnxModelWriter.Save(model, tmp.File("small.onnx"));
        Assert.That(File.Exists(tmp.File("small.onnx.data")), Is.False, "a small model stays inline");

        // Same decision rule as for a >2 GiB model, with the limit lowered so the test stays small.
        OnnxModelWriter.Save(model, tmp.File("big.onnx"), new OnnxWriteOptions { AutoExternalThresholdBytes = 1 << 20 });
        Assert.That(File.Exists(tmp.File("big.onnx.data")), "past the threshold, weights go external");
    }

    [Test]
    public void MissingExternalFileIsAClearError()
    {
        using var tmp = new TempDir();
        string path = tmp.File("m.onnx");
        OnnxModelWriter.Save(OnnxModelReader.Load(ReferenceModel), path, new OnnxWriteOptions { ExternalData = ExternalDataMode.Always });
        File.Delete(path + ".data");

        var e = Assert.Throws<OnnxFormatException>(() => OnnxModelReader.Load(path))!;
        Assert.That(e.Message, Does.Contain("m.onnx.data").And.Contain("does not exist"));
    }

    [Test]
    public void ExternalLocationsOutsideTheModelFolderAreRejected()
    {
        var proto = ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(TinyModels.MatMul()));
        var w = proto.Graph.Initializer.Single(t => t.Name == "w");
        w.ClearRawData();
        w.DataLocation = TensorProto.Types.DataLocation.External;
        w.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "../../etc/passwd" });
        using var tmp = new TempDir();

        var e = Assert.Throws<OnnxFormatException>(() => OnnxModelReader.Parse(proto.ToByteArray(), tmp.Path, "evil.onnx"))!;
        Assert.That(e.Message, Does.Contain("outside the model's folder"));
    }
}
