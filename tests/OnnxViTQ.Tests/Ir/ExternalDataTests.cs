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

        Assert.That(ExternalDataFiles.Of(path).Select(Path.GetFileName).Single(), Does.Match(@"^external\.onnx\.[0-9a-f]{16}\.data$"), "one weights file, named by its content");
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
        Assert.That(ExternalDataFiles.Of(tmp.File("small.onnx")), Is.Empty, "a small model stays inline");

        // Same decision rule as for a >2 GiB model, with the limit lowered so the test stays small.
        OnnxModelWriter.Save(model, tmp.File("big.onnx"), new OnnxWriteOptions { AutoExternalThresholdBytes = 1 << 20 });
        Assert.That(ExternalDataFiles.Of(tmp.File("big.onnx")), Has.Count.EqualTo(1), "past the threshold, weights go external");
    }

    [Test]
    public void MissingExternalFileIsAClearError()
    {
        using var tmp = new TempDir();
        string path = tmp.File("m.onnx");
        OnnxModelWriter.Save(OnnxModelReader.Load(ReferenceModel), path, new OnnxWriteOptions { ExternalData = ExternalDataMode.Always });
        File.Delete(ExternalDataFiles.Of(path).Single());

        var e = Assert.Throws<OnnxFormatException>(() => OnnxModelReader.Load(path))!;
        Assert.That(e.Message, Does.Contain("m.onnx.").And.Contain(".data").And.Contain("does not exist"));
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

    /// <summary>A model whose external file is named by its content: writing the same path again with
    /// other weights gives another name, so the old model never reads the new bytes; the model file
    /// is renamed last and the old weights removed after; the same weights keep their name.</summary>
    [Test]
    public void RewritingAModelNeverPointsTheOldModelAtNewBytes()
    {
        using var tmp = new TempDir();
        string path = tmp.File("m.onnx");
        var options = new OnnxWriteOptions { ExternalData = ExternalDataMode.Always };
        var model = OnnxModelReader.Load(ReferenceModel);
        OnnxModelWriter.Save(model, path, options);
        string first = ExternalDataFiles.Of(path).Single();
        var oldModelBytes = File.ReadAllBytes(path);
        OnnxModelWriter.Save(model, path, options);
        Assert.That(ExternalDataFiles.Of(path).Single(), Is.EqualTo(first), "same weights, same name: the write is repeatable byte for byte");
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(oldModelBytes));

        var changed = OnnxModelReader.Load(ReferenceModel);
        var w = changed.Graph.Initializers.First(v => v.Initializer!.ElementCount > 1000);
        float before = w.Initializer!.ToFloats()[0];
        changed.Graph.SetInitializer(w, OnnxViTQ.Ir.Tensor.FromFloats(w.Initializer!.Dims.ToArray(), w.Initializer.ToFloats().Select(v => v * 2).ToArray()));
        OnnxModelWriter.Save(changed, path, options);
        string second = ExternalDataFiles.Of(path).Single();
        Assert.That(second, Is.Not.EqualTo(first), "other weights, another file");
        Assert.That(File.Exists(first), Is.False, "the old weights are removed once the new model is in place");
        Assert.That(OnnxModelReader.Load(path).Graph.Lookup(w.Name)!.Initializer!.ToFloats()[0], Is.EqualTo(before * 2));
    }

    private static (byte[] Model, string Folder) ModelWithExternalWeight(TempDir tmp, string location, long offset = 0, long? length = null, int tensors = 1)
    {
        var proto = ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(TinyModels.MatMul()));
        var w = proto.Graph.Initializer.Single(t => t.Name == "w");
        int bytes = w.RawData.Length;
        w.ClearRawData();
        w.DataLocation = TensorProto.Types.DataLocation.External;
        w.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
        w.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        if (length is { } l) w.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = l.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        for (int i = 1; i < tensors; i++)
        {
            var copy = w.Clone();
            copy.Name = $"w{i}";
            proto.Graph.Initializer.Add(copy);
        }
        File.WriteAllBytes(tmp.File("weights.bin"), new byte[bytes]);
        return (proto.ToByteArray(), tmp.Path);
    }

    /// <summary>A symbolic link beside the model pointing elsewhere is not followed out of the folder.</summary>
    [Test]
    public void ALinkBesideTheModelCannotReachOutsideIt()
    {
        using var tmp = new TempDir();
        using var elsewhere = new TempDir();
        var (model, folder) = ModelWithExternalWeight(tmp, "innocent.bin");
        File.Move(tmp.File("weights.bin"), elsewhere.File("secret.bin"));
        File.CreateSymbolicLink(tmp.File("innocent.bin"), elsewhere.File("secret.bin"));
        var e = Assert.Throws<OnnxFormatException>(() => OnnxModelReader.Parse(model, folder, "evil.onnx"))!;
        Assert.That(e.Message, Does.Contain("innocent.bin").And.Contain("outside the model's folder"));
    }

    /// <summary>Offsets that are not numbers, or that wrap when added, are format errors, not crashes.</summary>
    [TestCase("-5", "external offset '-5', not a non-negative integer")]
    [TestCase("12abc", "external offset '12abc', not a non-negative integer")]
    [TestCase("9223372036854775807", "at offset 9223372036854775807")]
    public void MalformedOffsetsAreFormatErrors(string offset, string message)
    {
        using var tmp = new TempDir();
        var proto = ModelProto.Parser.ParseFrom(ModelWithExternalWeight(tmp, "weights.bin").Model);
        proto.Graph.Initializer.Single(t => t.Name == "w").ExternalData.Single(kv => kv.Key == "offset").Value = offset;
        var e = Assert.Throws<OnnxFormatException>(() => OnnxModelReader.Parse(proto.ToByteArray(), tmp.Path, "m.onnx"))!;
        Assert.That(e.Message, Does.Contain(message));
    }

    /// <summary>Many tensors claiming one region would multiply it in memory: refused.</summary>
    [Test]
    public void OverlappingRegionsAreRefused()
    {
        using var tmp = new TempDir();
        var (model, folder) = ModelWithExternalWeight(tmp, "weights.bin", tensors: 3);
        var e = Assert.Throws<OnnxFormatException>(() => OnnxModelReader.Parse(model, folder, "m.onnx"))!;
        Assert.That(e.Message, Does.Contain("claim").And.Contain("overlapping regions"));
    }
}
