using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Ir;

/// <summary>Bookkeeping of the mutation API and the validator that checks it.</summary>
public class GraphTests
{
    [Test]
    public void ProducersAndConsumersFollowEdits()
    {
        var model = TinyModels.Attention();
        var g = model.Graph;
        var x = g.Lookup("x")!;
        Assert.That(x.Consumers.Select(u => u.Node.Name), Is.EquivalentTo(new[] { "q_proj", "k_proj", "v_proj", "residual" }));

        var relu = g.AddNode("Relu", [x], ["x_relu"], before: g.Nodes[0]);
        x.ReplaceUsesWith(relu.Output(), u => u.Node.OpType == "MatMul");

        Assert.That(x.Consumers.Select(u => u.Node.Name), Is.EquivalentTo(new[] { relu.Name, "residual" }));
        Assert.That(relu.Output().Consumers, Has.Count.EqualTo(3));
        Assert.That(relu.Output().Producer, Is.SameAs(relu));
        Assert.DoesNotThrow(() => GraphValidator.Validate(model));
    }

    [Test]
    public void RemovingAUsedNodeIsRefused()
    {
        var g = TinyModels.Attention().Graph;
        var softmax = g.Nodes.Single(n => n.OpType == "Softmax");
        var e = Assert.Throws<InvalidOperationException>(() => g.RemoveNode(softmax))!;
        Assert.That(e.Message, Does.Contain("probs").And.Contain("pv"));
    }

    [Test]
    public void UniqueNameAvoidsEveryNameInTheModel()
    {
        var g = TinyModels.Attention().Graph;
        Assert.That(g.UniqueName("q"), Is.EqualTo("q_1"));
        Assert.That(g.UniqueName("fresh"), Is.EqualTo("fresh"));
    }

    [Test]
    public void ValidatorNamesADanglingUse()
    {
        var model = TinyModels.MatMul();
        var node = model.Graph.Nodes[0];
        model.Graph.Lookup("w")!.UseList.Clear(); // corrupt the bookkeeping behind the API's back

        var e = Assert.Throws<GraphValidationException>(() => GraphValidator.Validate(model))!;
        Assert.That(e.Message, Does.Contain("'w'").And.Contain(node.Name));
    }

    [Test]
    public void ValidatorFindsCycles()
    {
        var model = TinyModels.Attention();
        var g = model.Graph;
        var softmax = g.Nodes.Single(n => n.OpType == "Softmax");
        g.Nodes.Single(n => n.Name == "qk").SetInput(0, g.Lookup("context")!); // qk → softmax → pv → qk

        var e = Assert.Throws<GraphValidationException>(() => GraphValidator.Validate(model))!;
        Assert.That(e.Message, Does.Contain("cycle"));
        Assert.That(softmax.Graph, Is.SameAs(g));
    }

    [Test]
    public void ValidatorRequiresImportedDomains()
    {
        var model = TinyModels.MatMul();
        model.Graph.AddNode("Custom", [model.Graph.Lookup("y")!], ["z"], domain: "com.example");
        var e = Assert.Throws<GraphValidationException>(() => GraphValidator.Validate(model))!;
        Assert.That(e.Message, Does.Contain("com.example"));
    }

    [Test]
    public void SiblingSubgraphsMayReuseNamesButMayNotShadowOuterOnes()
    {
        var g = new Graph("outer");
        var cond = g.AddInput("cond", TensorTypeInfo.Of(DataType.Bool));
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, 2));
        var ifNode = g.AddNode("If", [cond], ["y"]);
        var thenG = new Graph("then");
        var elseG = new Graph("else");
        ifNode.SetAttribute(AttributeValue.Graph("then_branch", thenG));
        ifNode.SetAttribute(AttributeValue.Graph("else_branch", elseG));
        thenG.AddOutput(thenG.AddNode("Neg", [x], ["branch_out"]).Output());
        elseG.AddOutput(elseG.AddNode("Abs", [x], ["branch_out"]).Output());
        g.AddOutput(ifNode.Output());
        var model = TinyModels.NewModel(g);
        Assert.DoesNotThrow(() => GraphValidator.Validate(model));

        Assert.That(elseG.AddNode("Relu", [x], ["x"]).Output().Name, Is.EqualTo("x_1"), "the API never shadows");
        elseG.AddNodeExact("Relu", "", "relu", ["x"]); // as the reader would for such a file
        var e = Assert.Throws<GraphValidationException>(() => GraphValidator.Validate(model))!;
        Assert.That(e.Message, Does.Contain("'x' of graph 'else' shadows"));
    }
}
