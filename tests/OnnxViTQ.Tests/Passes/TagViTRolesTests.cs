using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Passes.Canonicalize;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

public class TagViTRolesTests
{
    private static QuantizationPlan Tag(Model m, PassContext? context = null)
    {
        context ??= new PassContext();
        new PassManager([new RewriteRulesPass("canonicalize", CanonicalizationRules.All), new SelectQuantizationSites(), new TagViTRoles()]).Run(m, context);
        return context.Get<QuantizationPlan>();
    }

    private static string Counts(QuantizationPlan plan) =>
        string.Join(", ", plan.Sites.GroupBy(s => s.Role).OrderBy(g => g.Key).Select(g => $"{g.Count()} {g.Key.Name()}"));

    // ViT: 6 blocks × (qkv + fc1) post-LN + the head on the class token; DeiT: two heads (class and
    // distillation tokens); Swin: 6 blocks × 2 + 2 patch-merging reductions + the pooled head.
    [TestCase("vit.opset17.onnx", "26 weight, 13 post-layernorm, 6 post-gelu, 6 post-softmax, 6 query, 6 key, 6 value, 6 attention-output, 1 input")]
    [TestCase("vit.opset13.onnx", "26 weight, 13 post-layernorm, 6 post-gelu, 6 post-softmax, 6 query, 6 key, 6 value, 6 attention-output, 1 input")]
    [TestCase("deit.opset17.onnx", "27 weight, 14 post-layernorm, 6 post-gelu, 6 post-softmax, 6 query, 6 key, 6 value, 6 attention-output, 1 input")]
    [TestCase("deit.opset13.onnx", "27 weight, 14 post-layernorm, 6 post-gelu, 6 post-softmax, 6 query, 6 key, 6 value, 6 attention-output, 1 input")]
    [TestCase("swin.opset17.onnx", "28 weight, 15 post-layernorm, 6 post-gelu, 6 post-softmax, 6 query, 6 key, 6 value, 6 attention-output, 1 input")]
    [TestCase("swin.opset13.onnx", "28 weight, 15 post-layernorm, 6 post-gelu, 6 post-softmax, 6 query, 6 key, 6 value, 6 attention-output, 1 input")]
    public void EveryTensorOfTheReferenceExportsGetsItsRole(string file, string expected)
    {
        var plan = Tag(OnnxModelReader.Load(Repo.Model(file)));
        Assert.That(Counts(plan), Is.EqualTo(expected));
        Assert.That(plan.Sites.Where(s => s.Role == TensorRole.Other), Is.Empty, "nothing unrecognised in the reference exports");
        // modules: one attention and one MLP per block, numbered in graph order
        Assert.That(plan.Sites.Where(s => s.Role == TensorRole.Query).Select(s => s.Module), Is.EqualTo(Enumerable.Range(0, 6).Select(i => $"attention {i}")));
        Assert.That(plan.Sites.Where(s => s.Role == TensorRole.PostGelu).Select(s => s.Module), Is.EqualTo(Enumerable.Range(0, 6).Select(i => $"mlp {i}")));
        foreach (var attention in plan.Sites.Where(s => s.Module.StartsWith("attention")).GroupBy(s => s.Module))
            Assert.That(attention.Select(s => s.Role).Distinct(), Is.SupersetOf(new[] { TensorRole.PostLayerNorm, TensorRole.Query, TensorRole.Key, TensorRole.PostSoftmax, TensorRole.Value, TensorRole.AttentionOutput, TensorRole.Weight }), attention.Key);
    }

    [Test]
    public void SwinsShiftedWindowsAndPatchMergingAreSeenThrough()
    {
        var plan = Tag(OnnxModelReader.Load(Repo.Model("swin.opset17.onnx")));
        // block 1 of stage 1 is shifted: LN → Pad → roll (Slice+Concat) → window partition → qkv
        var shifted = plan.Sites.Single(s => s.Role == TensorRole.PostLayerNorm && s.Module == "attention 1");
        Assert.That(shifted.Uses.Single().Node.Name, Does.Contain("features.1.1/attn"));
        var merging = plan.Sites.Where(s => s.Uses.Any(u => u.Node.Name.Contains("reduction"))).Where(s => !s.IsWeight).ToList();
        Assert.That(merging.Select(s => s.Role), Is.EqualTo(new[] { TensorRole.PostLayerNorm, TensorRole.PostLayerNorm }));
        var head = plan.Sites.Single(s => !s.IsWeight && s.Uses.Any(u => u.Node.Name == "/head/Gemm"));
        Assert.That((head.Role, head.Module), Is.EqualTo((TensorRole.PostLayerNorm, "head")), "the pooled final LayerNorm");
    }

    [Test]
    public void AnUnknownPatternStaysOtherWithTheReason()
    {
        // y = (x·2)·W: the linear's input comes from a Mul, not a LayerNorm, GELU or attention product
        var g = new Graph("g");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, 1, 4, 8));
        var scaled = g.AddNode("Relu", [x], ["scaled"], name: "act").Output();
        var y = g.AddNode("MatMul", [scaled, g.AddInitializer("w", Tensor.FromFloats([8, 3], TinyModels.Random(24, 1)))], ["y"], name: "fc").Output();
        g.AddOutput(y);
        var context = new PassContext();
        var plan = Tag(TinyModels.NewModel(g), context);
        var site = plan.For(scaled);
        Assert.That(site.Role, Is.EqualTo(TensorRole.Other));
        Assert.That(site.Notes.Single(), Is.EqualTo("role not recognised: input of linear 'fc' comes from Relu 'act', not a LayerNorm, GELU or attention product; baseline quantizer"));
        Assert.That(context.Diagnostics.Select(d => d.Message), Does.Contain("'scaled': role not recognised (input of linear 'fc' comes from Relu 'act', not a LayerNorm, GELU or attention product)"));
    }

    [Test]
    public void GeluIsRecognisedInItsErfAndTanhForms()
    {
        foreach (bool tanh in new[] { false, true })
        {
            var g = new Graph("gelu");
            var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, 1, 4, 8));
            Value C(float v) => g.AddInitializer(g.UniqueName("c"), Tensor.Scalar(v));
            Value gate;
            if (!tanh)
                gate = g.AddNode("Add", [g.AddNode("Erf", [g.AddNode("Div", [x, C(1.4142135f)], ["d"]).Output()], ["e"]).Output(), C(1)], ["gate"]).Output();
            else
            {
                var cube = g.AddNode("Pow", [x, C(3)], ["cube"]).Output();
                var inner = g.AddNode("Add", [x, g.AddNode("Mul", [cube, C(0.044715f)], ["m"]).Output()], ["inner"]).Output();
                var t = g.AddNode("Tanh", [g.AddNode("Mul", [inner, C(0.7978846f)], ["arg"]).Output()], ["t"]).Output();
                gate = g.AddNode("Add", [C(1), t], ["gate"]).Output(); // constant first: any operand order
            }
            var half = g.AddNode("Mul", [x, C(0.5f)], ["half"]).Output();
            var gelu = g.AddNode("Mul", [half, gate], ["gelu"], name: "gelu").Output();
            var y = g.AddNode("MatMul", [gelu, g.AddInitializer("w", Tensor.FromFloats([8, 3], TinyModels.Random(24, 1)))], ["y"], name: "fc2").Output();
            g.AddOutput(y);
            var plan = Tag(TinyModels.NewModel(g));
            Assert.That(plan.For(gelu).Role, Is.EqualTo(TensorRole.PostGelu), tanh ? "tanh form" : "erf form");
        }
    }
}
