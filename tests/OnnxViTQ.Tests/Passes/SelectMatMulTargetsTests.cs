using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

public class SelectMatMulTargetsTests
{
    private static QuantizationTargets Select(Model m)
    {
        var context = new PassContext();
        var result = new SelectMatMulTargets().Run(m, context);
        Assert.That(result.Modified, Is.False, "an analysis does not change the graph");
        return context.Get<QuantizationTargets>();
    }

    [Test]
    public void FindsLinearLayersAndBothAttentionMatMuls()
    {
        var t = Select(TinyModels.Attention());
        string Describe(QuantizationTarget x) => $"{x.Node.Name}:{x.InputIndex}:{x.Role}:{x.ChannelAxis?.ToString() ?? "-"}";
        Assert.That(t.All.Select(Describe), Is.EqualTo(new[]
        {
            "q_proj:0:Activation:-", "q_proj:1:Weight:1",
            "k_proj:0:Activation:-", "k_proj:1:Weight:1",
            "v_proj:0:Activation:-", "v_proj:1:Weight:1",
            "qk:0:Activation:-", "qk:1:Activation:-",       // Q·Kᵀ
            "pv:0:Activation:-", "pv:1:Activation:-",       // softmax·V
            "out_proj:0:Activation:-", "out_proj:1:Weight:0", // Gemm transB=1: rows are output channels
        }));
        Assert.That(t.Activations.Select(v => v.Name), Is.EqualTo(new[] { "x", "q", "k_t", "probs", "v", "context_2d" }));
    }

    [TestCase("vit.opset17.onnx", 37, 12)]
    [TestCase("deit.opset13.onnx", 38, 12)]
    [TestCase("swin.opset17.onnx", 39, 12)]
    public void EveryMatMulAndGemmOfTheReferenceModelsIsSelected(string file, int nodes, int attentionMatMuls)
    {
        var model = OnnxModelReader.Load(Repo.Model(file));
        var t = Select(model);
        Assert.That(t.Nodes, Has.Count.EqualTo(nodes));
        Assert.That(t.Nodes.Count(n => t.All.Where(x => x.Node == n).All(x => x.Role == TensorRole.Activation)), Is.EqualTo(attentionMatMuls));
    }

    [Test]
    public void IntegerWeightsAreLeftAlone()
    {
        var m = TinyModels.MatMul();
        var w = m.Graph.Lookup("w")!;
        m.Graph.SetInitializer(w, Tensor.From<sbyte>(DataType.Int8, w.Initializer!.Dims, new sbyte[w.Initializer.ElementCount]));
        Assert.That(Select(m).All, Is.Empty);
    }

    [Test]
    public void AnAlreadyQuantizedModelIsRejected()
    {
        var m = TinyModels.MatMul();
        var x = m.Graph.Lookup("x")!;
        m.Graph.AddNode("QuantizeLinear", [x, m.Graph.AddInitializer("s", Tensor.Scalar(1f))], ["xq"], name: "q0");
        var e = Assert.Throws<OnnxViTQException>(() => Select(m))!;
        Assert.That(e.Message, Does.Contain("already quantized").And.Contain("q0"));
    }
}
