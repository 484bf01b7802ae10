using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Lowering;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Lowering;

/// <summary>fuse-native-gelu and fuse-native-layernorm: which GELUs after a QuantizedLinear become
/// its epilogue and which LayerNorms before it move into it, which stay (tanh form, values read
/// elsewhere, outlier inputs), and on a real export every block's are fused.</summary>
public class NativeFusionTests
{
    private const int K = 8, N = 4;

    /// <summary>x → QuantizedLinear → the exporter's GELU form (erf or tanh) → output; with
    /// <paramref name="alsoOutput"/> the linear output is a graph output too.</summary>
    private static (Model Model, Node Linear) Layer(bool tanh = false, bool alsoOutput = false)
    {
        var g = new Graph("mlp");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, 2, K));
        var packed = g.AddInitializer("w", Tensor.From<byte>(DataType.UInt8, [NativeWeightLayout.Bytes(K, N, 8)], NativeWeightLayout.Pack((_, _) => 1, K, N, 8)));
        var s = g.AddInitializer("s", Tensor.FromFloats([N], [0.1f, 0.1f, 0.1f, 0.1f]));
        var op = NativeOpSchemas.QuantizedLinear;
        var linear = op.Node(g, [x, packed, s], "fc1", [op.Int("k", K), op.Int("n", N), op.String("activation", "token")], "fc1");
        var y = linear.Output();
        Value Scalar(string name, float v) => g.AddInitializer(name, Tensor.FromFloats([], [v]));
        Value inner;
        if (tanh)
        {
            var cube = g.AddNode("Mul", [g.AddNode("Mul", [y, y], ["sq"]).Output(), y], ["cube"]).Output();
            var arg = g.AddNode("Mul", [g.AddNode("Add", [y, g.AddNode("Mul", [cube, Scalar("c", 0.044715f)], ["cc"]).Output()], ["sum"]).Output(), Scalar("k", 0.7978846f)], ["arg"]).Output();
            inner = g.AddNode("Tanh", [arg], ["t"]).Output();
        }
        else
            inner = g.AddNode("Erf", [g.AddNode("Div", [y, Scalar("sqrt2", MathF.Sqrt(2))], ["scaled"]).Output()], ["erf"]).Output();
        var gate = g.AddNode("Add", [inner, Scalar("one", 1)], ["gate"]).Output();
        var gelu = g.AddNode("Mul", [g.AddNode("Mul", [y, gate], ["gated"]).Output(), Scalar("half", 0.5f)], ["gelu"]).Output();
        g.AddOutput(gelu);
        if (alsoOutput) g.AddOutput(y);
        return (new Model(g, 8, [new OpsetImport("", 17), new OpsetImport(NativeOps.Domain, 1)]), linear);
    }

    [Test]
    public void ErfGeluBecomesTheEpilogue()
    {
        var (model, linear) = Layer();
        Assert.That(FuseNativeGelu.Pass().Run(model, new PassContext()).Modified, Is.True);
        Assert.That(linear.Attribute("epilogue")?.AsString(), Is.EqualTo("gelu"));
        Assert.That(model.Graph.Nodes.Select(n => n.OpType), Is.EqualTo(new[] { NativeLinearLowering.OpType }), "the GELU nodes are gone");
        Assert.That(model.Graph.Outputs.Single().Name, Is.EqualTo("gelu"), "the model output keeps its name");
        Assert.That(model.Graph.Outputs.Single().Producer, Is.SameAs(linear));
    }

    [TestCase(true, false, TestName = "TanhGeluStays")]
    [TestCase(false, true, TestName = "GeluOfAGraphOutputStays")]
    public void OtherGelusStay(bool tanh, bool alsoOutput)
    {
        var (model, linear) = Layer(tanh, alsoOutput);
        int nodes = model.Graph.Nodes.Count();
        Assert.That(FuseNativeGelu.Pass().Run(model, new PassContext()).Modified, Is.False);
        Assert.That(linear.Attribute("epilogue"), Is.Null);
        Assert.That(model.Graph.Nodes.Count(), Is.EqualTo(nodes));
    }

    /// <summary>x → LayerNormalization → QuantizedLinear; optionally the normalised value also read
    /// by a second op (a graph output), or the linear with outlier-split input.</summary>
    private static (Model Model, Node Linear) Normalised(bool shared = false, bool outliers = false, bool shapeReader = false)
    {
        var g = new Graph("ln");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, 2, K));
        var gamma = g.AddInitializer("gamma", Tensor.FromFloats([K], Enumerable.Repeat(1f, K).ToArray()));
        var beta = g.AddInitializer("beta", Tensor.FromFloats([K], new float[K]));
        var y = g.AddNode("LayerNormalization", [x, gamma, beta], ["normalised"], [AttributeValue.Float("epsilon", 1e-6f)], name: "ln").Output();
        var packed = g.AddInitializer("w", Tensor.From<byte>(DataType.UInt8, [NativeWeightLayout.Bytes(K, N, 8)], NativeWeightLayout.Pack((_, _) => 1, K, N, 8)));
        var s = g.AddInitializer("s", Tensor.FromFloats([N], [0.1f, 0.1f, 0.1f, 0.1f]));
        var op = NativeOpSchemas.QuantizedLinear;
        var linear = op.Node(g, [y, packed, s], "fc1",
            [op.Int("k", K), op.Int("n", N), op.String("activation", "token"), .. outliers ? [op.Float("outlier_alpha", 4f)] : Array.Empty<AttributeValue>()], "fc1");
        g.AddOutput(linear.Output());
        if (shared) g.AddOutput(g.AddNode("Relu", [y], ["other"]).Output());
        if (shapeReader) g.AddOutput(g.AddNode("Shape", [y], ["shape"], name: "shape").Output());
        return (new Model(g, 8, [new OpsetImport("", 17), new OpsetImport(NativeOps.Domain, 1)]), linear);
    }

    [Test]
    public void LayerNormMovesIntoTheLinear()
    {
        var (model, linear) = Normalised();
        Assert.That(FuseNativeLayerNorm.Pass().Run(model, new PassContext()).Modified, Is.True);
        Assert.That(model.Graph.Nodes.Select(n => n.OpType), Is.EqualTo(new[] { NativeLinearLowering.OpType }));
        Assert.That(linear.Input(0)!.Name, Is.EqualTo("x"));
        Assert.That(linear.Input(4)!.Name, Is.EqualTo("gamma"));
        Assert.That(linear.Input(5)!.Name, Is.EqualTo("beta"));
        Assert.That(linear.Input(3), Is.Not.Null, "a zero bias fills the slot before the layernorm inputs");
        Assert.That(linear.GetFloat("layernorm_epsilon", 0), Is.EqualTo(1e-6f));
    }

    /// <summary>A Shape op reading the normalised value does not block the fusion; it then reads x.</summary>
    [Test]
    public void ShapeReadersMoveToTheInput()
    {
        var (model, linear) = Normalised(shapeReader: true);
        Assert.That(FuseNativeLayerNorm.Pass().Run(model, new PassContext()).Modified, Is.True);
        Assert.That(model.Graph.Nodes.Single(n => n.Name == "shape").Input(0)!.Name, Is.EqualTo("x"));
        Assert.That(model.Graph.Nodes.Any(n => n.OpType == "LayerNormalization"), Is.False);
        Assert.That(linear.Input(0)!.Name, Is.EqualTo("x"));
    }

    [TestCase(true, false, TestName = "SharedLayerNormStays")]
    [TestCase(false, true, TestName = "LayerNormBeforeOutlierInputStays")]
    public void OtherLayerNormsStay(bool shared, bool outliers)
    {
        var (model, linear) = Normalised(shared, outliers);
        Assert.That(FuseNativeLayerNorm.Pass().Run(model, new PassContext()).Modified, Is.False);
        Assert.That(linear.Inputs, Has.Count.EqualTo(3));
    }

    /// <summary>--format native on the ViT export puts every block's LayerNorms in its qkv and fc1
    /// ops and leaves the GELUs to ONNX Runtime; a recipe that names fuse-native-gelu after the
    /// emitter gets every GELU in its fc1 and no Erf left. The files still agree with the portable
    /// model (the agreement tests compare logits).</summary>
    [Test]
    public void NativeFormatFusesEveryBlock()
    {
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        int gelus = model.Graph.Nodes.Count(n => n.OpType == "Erf");
        var result = Quantizer.Quantize(model, "vit", new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { CalibrationSamples = 32, Format = OutputFormat.Native });
        Assert.That(gelus, Is.GreaterThan(0));
        Assert.That(model.Graph.Nodes.Count(n => n.OpType == "Erf"), Is.EqualTo(gelus), "GELU fusion is opt-in");
        Assert.That(result.Diagnostics.Any(d => d.Pass == "fuse-native-gelu"), Is.False);
        // Each block's two LayerNorms (before qkv and fc1) are in their ops; the final one feeds the head's token slice.
        int fusedNorms = model.Graph.Nodes.Count(n => n.OpType == NativeLinearLowering.OpType && n.Input(4) is not null);
        Assert.That(fusedNorms, Is.EqualTo(2 * gelus));
        Assert.That(model.Graph.Nodes.Count(n => n.OpType == "LayerNormalization"), Is.EqualTo(1));

        var minmax = Recipes.Get("minmax");
        var withGelu = minmax with { Passes = [.. minmax.Passes.SelectMany(p => p.Name == "emit-portable" ? new[] { p, new PassStep("fuse-native-gelu") } : [p])] };
        var fused = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        result = Quantizer.Quantize(fused, "vit", new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { CalibrationSamples = 32, Format = OutputFormat.Native }, withGelu);
        Assert.That(fused.Graph.Nodes.Count(n => n.OpType == "Erf"), Is.Zero);
        Assert.That(fused.Graph.Nodes.Count(n => n.OpType == NativeLinearLowering.OpType && n.Attribute("epilogue")?.AsString() == "gelu"), Is.EqualTo(gelus));
        Assert.That(result.Diagnostics.Any(d => d.Pass == "fuse-native-gelu" && d.Message.StartsWith($"{gelus} GELU(s) fused")), Is.True);
    }

    /// <summary>--format native fuses each ViT attention (nn.MultiheadAttention's export) into one
    /// QuantizedAttention: no Softmax, Slice or product MatMul is left, the shape arithmetic that
    /// only fed the removed reshapes is gone, and no QuantizeLinear is left for Q, K, V or the
    /// probabilities. Swin's window attention (5-D reshape, relative position bias) is not this
    /// form: nothing is fused and its products stay portable.</summary>
    [TestCase("vit.opset17.onnx", 6)]
    [TestCase("deit.opset13.onnx", 6)]
    [TestCase("swin.opset17.onnx", 0)]
    public void NativeFormatFusesEachAttention(string file, int attentions)
    {
        var model = OnnxModelReader.Load(Repo.Model(file));
        int softmaxes = model.Graph.Nodes.Count(n => n.OpType == "Softmax");
        int shapes = model.Graph.Nodes.Count(n => n.OpType == "Shape");
        var result = Quantizer.Quantize(model, file, new NpyTensorSource(Repo.Calibration, null),
            new QuantizationOptions { CalibrationSamples = 32, Format = OutputFormat.Native });
        var nodes = model.Graph.Nodes;
        Assert.That(nodes.Count(n => n.OpType == FuseNativeAttention.OpType && n.Domain == NativeOps.Domain), Is.EqualTo(attentions));
        Assert.That(nodes.Count(n => n.OpType == "Softmax"), Is.EqualTo(softmaxes - attentions));
        var messages = result.Diagnostics.Where(d => d.Pass == "fuse-native-attention").Select(d => d.Message).ToList();
        Assert.That(messages, Is.EqualTo(attentions == 0 ? Array.Empty<string>() : new[] { $"{attentions} attention(s) fused into {NativeOps.Domain}.{FuseNativeAttention.OpType}" }));
        if (attentions == 0) return;
        Assert.That(nodes.Count(n => n.OpType is "Slice" or "MatMul"), Is.Zero, "the q|k|v slices and both products are in the op");
        Assert.That(nodes.Count(n => n.OpType == "Shape"), Is.LessThan(shapes - 2 * attentions), "the reshapes' shape arithmetic went with them");
        foreach (var attention in nodes.Where(n => n.OpType == FuseNativeAttention.OpType))
        {
            Assert.That(attention.Input(0)!.Producer?.OpType, Is.EqualTo(NativeLinearLowering.OpType), "it reads the qkv projection");
            Assert.That(attention.Attribute("heads")!.AsInt(), Is.GreaterThan(0));
            Assert.That(attention.Attribute("q_divisor")!.AsFloat(), Is.GreaterThan(1), "the exporter's 1/√d is applied in the op");
        }
        // What is left quantized in the portable form: the image before the patch embedding.
        Assert.That(nodes.Count(n => n.OpType == "QuantizeLinear"), Is.EqualTo(1));
    }
}
