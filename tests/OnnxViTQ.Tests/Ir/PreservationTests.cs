using Google.Protobuf;
using Onnx;
using OnnxViTQ.Ir;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Ir;

/// <summary>Fields the IR does not model survive load → save.</summary>
public class PreservationTests
{
    /// <summary>Field 1000, varint 42: a field no ONNX version defines.</summary>
    private static readonly byte[] UnknownField = [0xC0, 0x3E, 42];

    private static ModelProto DecoratedProto()
    {
        var proto = ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(TinyModels.Attention()));
        proto.ProducerName = "pytorch";
        proto.ProducerVersion = "1.13.1";
        proto.DocString = "model doc";
        proto.Domain = "org.example";
        proto.ModelVersion = 7;
        proto.MetadataProps.Add(new StringStringEntryProto { Key = "k", Value = "v" });
        proto.Graph.DocString = "graph doc";
        proto.Graph.Node[0].DocString = "node doc";
        proto.Graph.Node.First(n => n.OpType == "Softmax").Attribute[0].DocString = "attribute doc";
        proto.Graph.Initializer[0].DocString = "tensor doc";
        proto.Graph.Input[0].DocString = "input doc";
        proto.Graph.Input[0].Type.TensorType.Shape.Dim[1].Denotation = "DATA_CHANNEL";
        proto.Graph.ValueInfo.Add(new ValueInfoProto
        {
            Name = "scores",
            DocString = "annotated",
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1, Shape = new TensorShapeProto() } },
        });
        proto.Graph.QuantizationAnnotation.Add(new TensorAnnotation { TensorName = "q" });
        proto.Functions.Add(new FunctionProto { Name = "f", Domain = "org.example" });
        proto.MergeFrom(UnknownField);
        proto.Graph.MergeFrom(UnknownField);
        proto.Graph.Node[1].MergeFrom(UnknownField);
        proto.Graph.Initializer[1].MergeFrom(UnknownField);
        proto.Graph.Output[0].MergeFrom(UnknownField);
        return proto;
    }

    [Test]
    public void DocStringsMetadataFunctionsAndUnknownFieldsRoundTrip()
    {
        var original = DecoratedProto();
        var written = ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(OnnxModelReader.Parse(original.ToByteArray())));
        Assert.That(written.Graph.Node[1].CalculateSize(), Is.EqualTo(original.Graph.Node[1].CalculateSize()), "unknown field of a node");
        Assert.That(written.Graph.Input[0], Is.EqualTo(original.Graph.Input[0]), "doc string and denotation of an input");
        Assert.That(written, Is.EqualTo(original));
    }

    [Test]
    public void TypedTensorFieldsAreReadAsValues()
    {
        var proto = ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(TinyModels.MatMul(k: 2, n: 3)));
        var w = proto.Graph.Initializer.Single(t => t.Name == "w");
        w.ClearRawData();
        w.FloatData.Add([1f, -2f, 3.5f, 0f, float.Epsilon, -0f]);

        var model = OnnxModelReader.Parse(proto.ToByteArray());

        Assert.That(model.Graph.Lookup("w")!.Initializer!.ToFloats(), Is.EqualTo(new[] { 1f, -2f, 3.5f, 0f, float.Epsilon, -0f }));
    }

    [Test]
    public void SubgraphsReadingOuterValuesRoundTripAndRun()
    {
        // y = If(cond, then: x * 2, else: x + w) with both branches reading outer-scope values.
        var g = new Graph("outer");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, 3));
        var cond = g.AddInput("cond", TensorTypeInfo.Of(DataType.Bool));
        var w = g.AddInitializer("w", Tensor.FromFloats([3], [10f, 20f, 30f]));
        var two = g.AddInitializer("two", Tensor.Scalar(2f));
        var ifNode = g.AddNode("If", [cond], ["y"], name: "branch");
        var thenG = new Graph("then_branch");
        var elseG = new Graph("else_branch");
        ifNode.SetAttribute(AttributeValue.Graph("then_branch", thenG));
        ifNode.SetAttribute(AttributeValue.Graph("else_branch", elseG));
        thenG.AddOutput(thenG.AddNode("Mul", [x, two], ["then_out"]).Output());
        elseG.AddOutput(elseG.AddNode("Add", [x, w], ["else_out"]).Output());
        thenG.Outputs[0].Type = elseG.Outputs[0].Type = TensorTypeInfo.Of(DataType.Float, 3);
        g.AddOutput(ifNode.Output());
        ifNode.Output().Type = TensorTypeInfo.Of(DataType.Float, 3);
        var model = TinyModels.NewModel(g);

        Assert.That(ifNode.ImplicitInputs(), Is.EquivalentTo(new[] { x, two, w }));
        var bytes = OnnxModelWriter.ToBytes(model);
        var reread = OnnxModelReader.Parse(bytes);
        Assert.That(OnnxModelWriter.ToBytes(reread), Is.EqualTo(bytes));
        var outer = reread.Graph.Lookup("x")!;
        Assert.That(outer.Consumers.Select(u => u.Node.Graph.Name), Is.EquivalentTo(new[] { "then_branch", "else_branch" }),
            "uses inside subgraphs are recorded on the outer value");

        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(bytes);
        foreach (var (flag, expected) in new[] { (true, new[] { 2f, 4f, 6f }), (false, new[] { 11f, 22f, 33f }) })
        {
            using var xv = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(new[] { 1f, 2f, 3f }, [3]);
            using var cv = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(new[] { flag }, []);
            using var run = new Microsoft.ML.OnnxRuntime.RunOptions();
            using var r = session.Run(run, ["x", "cond"], [xv, cv], ["y"]);
            Assert.That(r[0].GetTensorDataAsSpan<float>().ToArray(), Is.EqualTo(expected));
        }
    }

    [Test]
    public void AttributesTheIrDoesNotModelAreKeptVerbatim()
    {
        var proto = ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(TinyModels.MatMul()));
        var sparse = new AttributeProto
        {
            Name = "sparse_value",
            Type = AttributeProto.Types.AttributeType.SparseTensor,
            SparseTensor = new SparseTensorProto { Dims = { 4 }, Values = new TensorProto { DataType = 1, Dims = { 1 }, FloatData = { 5f } }, Indices = new TensorProto { DataType = 7, Dims = { 1 }, Int64Data = { 2 } } },
        };
        proto.Graph.Node.Add(new NodeProto { OpType = "Constant", Output = { "c" }, Attribute = { sparse } });

        var model = OnnxModelReader.Parse(proto.ToByteArray());
        var attr = model.Graph.Nodes.Single(n => n.OpType == "Constant").Attribute("sparse_value")!;
        Assert.That(attr.Kind, Is.EqualTo(AttributeKind.SparseTensor));
        Assert.That(ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(model)), Is.EqualTo(proto));
    }

    [Test]
    public void UnsortedNodesAreWrittenInTopologicalOrder()
    {
        var proto = ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(TinyModels.Attention()));
        var reversed = proto.Graph.Node.Reverse().ToList();
        proto.Graph.Node.Clear();
        proto.Graph.Node.Add(reversed);

        var written = ModelProto.Parser.ParseFrom(OnnxModelWriter.ToBytes(OnnxModelReader.Parse(proto.ToByteArray())));

        var defined = new HashSet<string>(written.Graph.Input.Select(i => i.Name).Concat(written.Graph.Initializer.Select(i => i.Name)));
        foreach (var node in written.Graph.Node)
        {
            Assert.That(node.Input.Where(i => i.Length > 0), Is.SubsetOf(defined), $"node {node.Name} comes before one of its inputs");
            foreach (var o in node.Output) defined.Add(o);
        }
    }
}
