using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

public class SelectQuantizationSitesTests
{
    private static QuantizationPlan Select(Model m)
    {
        var context = new PassContext();
        var result = new SelectQuantizationSites().Run(m, context);
        Assert.That(result.Modified, Is.False, "an analysis does not change the graph");
        return context.Get<QuantizationPlan>();
    }

    private static string Describe(QuantizationSite s) =>
        $"{string.Join("+", s.Uses.Select(u => $"{u.Node.Name}:{u.InputIndex}"))}:{s.Role.Name()}:{s.ChannelAxis?.ToString() ?? "-"}";

    [Test]
    public void FindsLinearLayersAndBothAttentionMatMulsOneSitePerTensor()
    {
        var plan = Select(TinyModels.Attention());
        Assert.That(plan.Sites.Select(Describe), Is.EqualTo(new[]
        {
            "q_proj:0+k_proj:0+v_proj:0:other:-",     // x feeds three projections: one site, three uses
            "q_proj:1:weight:1", "k_proj:1:weight:1", "v_proj:1:weight:1",
            "qk:0:other:-", "qk:1:other:-",            // Q·Kᵀ
            "pv:0:other:-", "pv:1:other:-",            // softmax·V
            "out_proj:0:other:-", "out_proj:1:weight:0", // Gemm transB=1: rows are output channels
        }));
        Assert.That(plan.Sites.All(s => s.Spec is null && s.Parameters is null), "selection only finds sites");
    }

    [TestCase("vit.opset17.onnx", 38, 12)]
    [TestCase("deit.opset13.onnx", 39, 12)]
    [TestCase("swin.opset17.onnx", 40, 12)]
    public void EveryMatMulGemmAndConvOfTheReferenceModelsIsSelected(string file, int nodes, int attentionMatMuls)
    {
        var model = OnnxModelReader.Load(Repo.Model(file));
        var plan = Select(model);
        Assert.That(plan.QuantizedNodes, Has.Count.EqualTo(nodes));
        Assert.That(plan.QuantizedNodes.Count(n => plan.Sites.Where(s => s.Uses.Any(u => u.Node == n)).All(s => !s.IsWeight)), Is.EqualTo(attentionMatMuls));
        var conv = plan.QuantizedNodes.Single(n => n.OpType == "Conv");
        Assert.That(plan.For(conv.Inputs[1]!).ChannelAxis, Is.EqualTo(0), "the patch embedding's weights per output channel");
    }

    [Test]
    public void IntegerWeightsAreLeftAlone()
    {
        var m = TinyModels.MatMul();
        var w = m.Graph.Lookup("w")!;
        m.Graph.SetInitializer(w, Tensor.From<sbyte>(DataType.Int8, w.Initializer!.Dims, new sbyte[w.Initializer.ElementCount]));
        Assert.That(Select(m).Sites, Is.Empty);
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

    [Test]
    public void PlanUpdatesReplaceTheEntryOfTheSameValue()
    {
        var plan = Select(TinyModels.MatMul());
        var x = plan.Sites[0];
        plan.Update(x with { Module = "m" });
        Assert.That(plan.For(x.Value).Module, Is.EqualTo("m"));
        Assert.That(plan.Sites, Has.Count.EqualTo(2));
        Assert.Throws<InvalidOperationException>(() => plan.Add(x), "one entry per value");
    }
}
