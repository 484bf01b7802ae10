using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Patterns;

public class RewriteRuleTests
{
    /// <summary>Mul(Add(x, b), s) → com.onnxvitq.ScaleShift(x, b, s): the kind of fusion the native
    /// runtime needs (a custom domain, intermediates that must have no other readers).</summary>
    private static readonly RewriteRule FuseScaleShift = new(
        "fuse-scale-shift",
        Pattern.Op("Mul", Pattern.Op("Add", Pattern.Dynamic("x"), Pattern.Constant("b")).Named("add"), Pattern.Constant("s")).Named("mul"),
        _ => null,
        (m, r) =>
        {
            var fused = r.AddNode("ScaleShift", [m.Value("x"), m.Value("b"), m.Value("s")], ["fused"], domain: "com.onnxvitq");
            r.Replace(m.Node("mul").Output(), fused.Output());
            r.RemoveDead(m.Node("mul"));
        })
    {
        SingleUse = ["add"],
        Opsets = [new OpsetImport("com.onnxvitq", 1)],
    };

    private static Model Model(bool extraReader)
    {
        var g = new Graph("g");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, 4));
        var t = g.AddNode("Add", [x, g.AddInitializer("b", Tensor.FromFloats([4], [1, 2, 3, 4]))], ["t"], name: "add").Output();
        var y = g.AddNode("Mul", [t, g.AddInitializer("s", Tensor.FromFloats([4], [2, 2, 2, 2]))], ["y"], name: "mul").Output();
        var z = g.AddNode("Relu", [y], ["z"], name: "relu").Output();
        g.AddOutput(z);
        if (extraReader) g.AddOutput(g.AddNode("Neg", [t], ["other"], name: "other").Output());
        return TinyModels.NewModel(g);
    }

    [Test]
    public void TheFusionReplacesTheSubgraphAndImportsItsDomain()
    {
        var model = Model(extraReader: false);
        var result = new RewriteRulesPass("fuse", [FuseScaleShift]).Run(model, new PassContext());
        Assert.That(result.Modified);
        Assert.That(GraphPrinter.Print(model.Graph), Is.EqualTo("""
            input %x: float32[4]
            %fused = com.onnxvitq.ScaleShift(%x, %b, %s)
            %z = Relu(%fused)
            output %z

            """.ReplaceLineEndings()));
        Assert.That(model.OpsetVersion("com.onnxvitq"), Is.EqualTo(1));
        Assert.DoesNotThrow(() => GraphValidator.Validate(model));
    }

    [Test]
    public void AnIntermediateWithAnotherReaderIsNotFused()
    {
        var model = Model(extraReader: true);
        var context = new PassContext();
        Assert.That(new RewriteRulesPass("fuse", [FuseScaleShift]).Run(model, context).Modified, Is.False);
        Assert.That(context.Diagnostics.Single().Message, Is.EqualTo("fuse-scale-shift declined at node 'mul': 't' has 2 uses"));
        Assert.That(model.OpsetVersion("com.onnxvitq"), Is.Zero, "nothing imported");
    }

    [Test]
    public void ANewDomainMustBeDeclared()
    {
        var undeclared = FuseScaleShift with { Opsets = [] };
        var e = Assert.Throws<InvalidOperationException>(() => new RewriteRulesPass("fuse", [undeclared]).Run(Model(false), new PassContext()))!;
        Assert.That(e.Message, Is.EqualTo("rule 'fuse-scale-shift' added a node in domain 'com.onnxvitq' without declaring its opset"));
    }

    [Test]
    public void RulesThatNeverStopFailInsteadOfStoppingSilently()
    {
        // Relu(x) → Relu(x) again: always matches, never makes progress.
        var forever = new RewriteRule("forever", Pattern.Op("Relu", Pattern.Any("x")).Named("op"), _ => null, (m, r) =>
        {
            var again = r.AddNode("Relu", [m.Value("x")], ["again"]);
            r.Replace(m.Node("op").Output(), again.Output());
            r.RemoveDead(m.Node("op"));
        });
        var g = new Graph("g");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, 4));
        var y = g.AddNode("Relu", [x], ["y"]).Output();
        g.AddOutput(g.AddNode("Neg", [y], ["z"]).Output());
        var e = Assert.Throws<InvalidOperationException>(() => new RewriteRulesPass("loop", [forever]).Run(TinyModels.NewModel(g), new PassContext()))!;
        Assert.That(e.Message, Does.StartWith($"rewrite rules did not converge after {RewriteRulesPass.MaxRounds} rounds (forever ×"));
    }
}
