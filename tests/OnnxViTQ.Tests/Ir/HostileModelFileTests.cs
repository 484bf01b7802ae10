using Google.Protobuf;
using Onnx;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Ir;

/// <summary>
/// Model files are untrusted: a field that claims a size is checked against what is there before
/// anything is allocated for it, and a malformed one is an <see cref="OnnxFormatException"/>
/// naming the tensor or attribute (exit 2), never an overflow, a huge allocation or a null
/// dereference (exit 70).
/// </summary>
public class HostileModelFileTests
{
    private static ModelProto Proto() => ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(TinyModels.MatMul()));

    private static OnnxFormatException Refused(ModelProto proto) =>
        Assert.Throws<OnnxFormatException>(() => OnnxModelReader.Parse(proto.ToByteArray(), null, "hostile.onnx"))!;

    /// <summary>Dims whose product is 2^64 wrapped to 0 elements: an empty raw field then matched the
    /// "size" and the tensor claimed 2^32 × 2^32 elements to every pass after.</summary>
    [Test]
    public void DimsWhoseProductWrapsAreRefused()
    {
        var proto = Proto();
        var w = proto.Graph.Initializer.Single(t => t.Name == "w");
        w.Dims.Clear();
        w.Dims.Add([1L << 32, 1L << 32]);
        w.RawData = ByteString.Empty;
        Assert.That(Refused(proto).Message, Is.EqualTo("'hostile.onnx': initializer 'w' is malformed: shape [4294967296,4294967296] has more than 2^62 elements"));
    }

    /// <summary>A shape claiming 2^31 floats over an empty float_data field used to allocate 8 GiB
    /// before counting the values.</summary>
    [Test]
    public void TypedFieldsAreCountedBeforeTheBufferIsAllocated()
    {
        var proto = Proto();
        var w = proto.Graph.Initializer.Single(t => t.Name == "w");
        w.ClearRawData();
        w.Dims.Clear();
        w.Dims.Add([1L << 31, 1]);
        w.FloatData.Add([1f, 2f]);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var e = Refused(proto);
        Assert.That(e.Message, Is.EqualTo("'hostile.onnx': initializer 'w' has 2 values, its shape needs 2147483648"));
        Assert.That(GC.GetTotalAllocatedBytes(precise: true) - before, Is.LessThan(64L << 20), "nothing sized by the claim was allocated");
    }

    [TestCase(5, "GRAPH", "graph")]
    [TestCase(4, "TENSOR", "tensor")]
    public void AnAttributeTypedGraphOrTensorWithoutOneIsAFormatError(int attributeType, string typeName, string payload)
    {
        var type = (AttributeProto.Types.AttributeType)attributeType;
        var proto = Proto();
        var node = proto.Graph.Node[0];
        node.Attribute.Add(new AttributeProto { Name = "body", Type = type });
        Assert.That(Refused(proto).Message, Is.EqualTo($"'hostile.onnx': attribute 'body' of node '{node.Name}' is typed {typeName} but holds no {payload}"));
    }

    [Test]
    public void ANegativeDimensionIsAFormatError()
    {
        var proto = Proto();
        var w = proto.Graph.Initializer.Single(t => t.Name == "w");
        w.Dims[0] = -w.Dims[0];
        Assert.That(Refused(proto).Message, Does.StartWith("'hostile.onnx': initializer 'w' is malformed: shape [").And.EndsWith("] has a negative dimension"));
    }

    /// <summary>Found by the fuzz harness: ONNX Runtime 1.32 kills the process (SIGSEGV while it
    /// optimizes the session) on a LayerNormalization whose bias is named "" instead of omitted — a
    /// valid model. The writer leaves trailing absent inputs of standard ops out, and a session on
    /// such a file goes through the reader and writer, so quantize and eval handle it (before, this
    /// test took the test host down).</summary>
    [Test]
    public void ALayerNormalizationNamingAnEmptyBiasNeitherCrashesQuantizeNorEval()
    {
        using var tmp = new TempDir();
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Repo.Model("deit.opset17.onnx")));
        var ln = proto.Graph.Node.First(n => n.OpType == "LayerNormalization");
        ln.Input[2] = "";
        string model = tmp.File("empty-bias.onnx"), output = tmp.File("q.onnx");
        File.WriteAllBytes(model, proto.ToByteArray());

        Assert.That(ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(OnnxModelReader.Load(model))).Graph.Node.First(n => n.Name == ln.Name).Input,
            Is.EqualTo(ln.Input.Take(2)), "written without the trailing empty name");
        foreach (var format in new[] { "portable", "native" })
        {
            var err = new StringWriter();
            Assert.That(OnnxViTQ.Cli.CliApp.Run(["quantize", model, "-o", output, "--calib", Repo.Calibration, "--samples", "16", "--format", format], TextWriter.Null, err), Is.Zero, err.ToString());
            Assert.That(OnnxViTQ.Cli.CliApp.Run(["eval", output, "--data", Repo.EvalImages, "--labels", Repo.EvalLabels, "--limit", "16", "--ref", model], TextWriter.Null, err), Is.Zero, err.ToString());
        }
    }

    /// <summary>Other nodes keep their inputs as written (PyTorch's Pad names its absent axes ""):
    /// the writer stays lossless but for the one form ONNX Runtime crashes on.</summary>
    [Test]
    public void OnlyLayerNormalizationLosesItsTrailingEmptyInputs()
    {
        var g = new OnnxViTQ.Ir.Graph("g");
        var x = g.AddInput("x", OnnxViTQ.Ir.TensorTypeInfo.Of(OnnxViTQ.Ir.DataType.Float, 2));
        var scale = g.AddInitializer("scale", OnnxViTQ.Ir.Tensor.FromFloats([2], [1f, 1f]));
        var y = g.AddNode("LayerNormalization", [x, scale, null], ["y"]).Output();
        var z = g.AddNode("Clip", [y, null, null], ["z"]).Output();
        g.AddOutput(z);
        var written = ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(TinyModels.NewModel(g)));
        Assert.That(written.Graph.Node[0].Input, Is.EqualTo(new[] { "x", "scale" }));
        Assert.That(written.Graph.Node[1].Input, Is.EqualTo(new[] { "y", "", "" }));
    }
}
