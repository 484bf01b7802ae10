using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Passes.Canonicalize;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

public class CanonicalizationTests
{
    /// <summary>What torch.onnx.export(do_constant_folding=False) emits for Linear layers:
    /// y = x·Transpose(W), plus a parameter shared through Identity, plus a transposed constant
    /// that is itself a graph output (must stay).</summary>
    private static Model Unfolded()
    {
        var g = new Graph("unfolded");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, 2, 3));
        var w = g.AddInitializer("w", Tensor.FromFloats([4, 3], TinyModels.Random(12, 1)));
        var wt = g.AddNode("Transpose", [w], ["w_t"], [AttributeValue.Ints("perm", [1, 0])], name: "transpose_w").Output();
        var h = g.AddNode("MatMul", [x, wt], ["h"], name: "fc1").Output();
        var v = g.AddInitializer("v", Tensor.FromFloats([4, 2], TinyModels.Random(8, 2)));
        var vi = g.AddNode("Identity", [v], ["v_shared"], name: "share_v").Output();
        var y = g.AddNode("MatMul", [h, vi], ["y"], name: "fc2").Output();
        g.AddOutput(y);
        var exposed = g.AddNode("Transpose", [v], ["v_t"], name: "exposed").Output();
        g.AddOutput(exposed);
        y.Type = TensorTypeInfo.Of(DataType.Float, 2, 2);
        exposed.Type = TensorTypeInfo.Of(DataType.Float, 2, 4);
        return TinyModels.NewModel(g);
    }

    [Test]
    public void FoldsTransposedAndSharedWeightsIntoConstants()
    {
        var model = Unfolded();
        var input = TinyModels.Random(6, 3);
        var before = Ort.Run(Ort.Bytes(model), "x", input, [2, 3]);
        var context = new PassContext();
        var pass = new RewriteRulesPass("canonicalize", CanonicalizationRules.All);

        Assert.That(pass.Run(model, context).Modified);
        new RemoveUnusedConstants().Run(model, context);

        Assert.That(GraphPrinter.Print(model.Graph), Is.EqualTo("""
            input %x: float32[2,3]
            %h = MatMul(%x, %w_t_1)
            %y = MatMul(%h, %v)
            %v_t = Transpose(%v)
            output %y
            output %v_t

            """.ReplaceLineEndings()));
        Assert.That(context.Diagnostics.Select(d => d.Message), Does.Contain("fold-constant-transpose declined at node 'exposed': its output is a graph output"));
        var after = Ort.Run(Ort.Bytes(model), "x", input, [2, 3]);
        Assert.That(after, Is.EqualTo(before), "folding does not change what the model computes");
        Assert.That(pass.Run(model, new PassContext()).Modified, Is.False, "nothing left to fold");
    }

    [Test]
    public void FoldedWeightsAreSelectedAsWeights()
    {
        var model = Unfolded();
        var context = new PassContext();
        new RewriteRulesPass("canonicalize", CanonicalizationRules.All).Run(model, context);
        new SelectQuantizationSites().Run(model, context);
        var roles = context.Get<QuantizationPlan>().Sites.Select(s => $"{s.Uses[0].Node.Name}:{s.Uses[0].InputIndex}:{s.Role.Name()}:{s.ChannelAxis}");
        Assert.That(roles, Is.EqualTo(new[] { "fc1:0:other:", "fc1:1:weight:1", "fc2:0:other:", "fc2:1:weight:1" }));
    }

    [Test]
    public void TransposeFollowsOnnxSemantics()
    {
        // [2,3,4] with perm [2,0,1]: out[k,i,j] = in[i,j,k]
        var values = Enumerable.Range(0, 24).Select(i => (float)i).ToArray();
        var t = TensorOps.Transpose(Tensor.FromFloats([2, 3, 4], values), [2, 0, 1]);
        Assert.That(t.Dims, Is.EqualTo(new long[] { 4, 2, 3 }));
        var o = t.AsSpan<float>().ToArray();
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 4; k++)
                    Assert.That(o[k * 6 + i * 3 + j], Is.EqualTo(values[i * 12 + j * 4 + k]));
        Assert.That(TensorOps.Transpose(Tensor.FromFloats([2, 3], values[..6]), null).AsSpan<float>().ToArray(), Is.EqualTo(new float[] { 0, 3, 1, 4, 2, 5 }));
    }

    /// <summary>paddle2onnx/tf2onnx weights: Constant nodes holding float tensors become initializers
    /// of the same name (then foldable like any weight); a scalar, an integer shape and a constant
    /// that is a graph output stay nodes.</summary>
    [Test]
    public void ConstantNodeWeightsBecomeInitializersOfTheSameName()
    {
        var g = new Graph("constant_nodes");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, 2, 3));
        var w = g.AddNode("Constant", [], ["fc.weight"], [AttributeValue.Tensor("value", Tensor.FromFloats([3, 4], TinyModels.Random(12, 1)))], name: "weight_node").Output();
        var h = g.AddNode("MatMul", [x, w], ["h"], name: "fc").Output();
        var scale = g.AddNode("Constant", [], ["scale"], [AttributeValue.Tensor("value", Tensor.Scalar(0.5f))], name: "scale_node").Output();
        var s = g.AddNode("Mul", [h, scale], ["s"], name: "mul").Output();
        var shape = g.AddNode("Constant", [], ["shape"], [AttributeValue.Tensor("value", Tensor.FromInt64s([2], [4, 2]))], name: "shape_node").Output();
        var y = g.AddNode("Reshape", [s, shape], ["y"], name: "reshape").Output();
        var exposed = g.AddNode("Constant", [], ["bias_out"], [AttributeValue.Tensor("value", Tensor.FromFloats([2], [1f, 2f]))], name: "exposed").Output();
        g.AddOutput(y);
        g.AddOutput(exposed);
        y.Type = TensorTypeInfo.Of(DataType.Float, 4, 2);
        exposed.Type = TensorTypeInfo.Of(DataType.Float, 2);
        var model = TinyModels.NewModel(g);
        var input = TinyModels.Random(6, 3);
        var before = Ort.Run(Ort.Bytes(model), "x", input, [2, 3]);
        var context = new PassContext();

        Assert.That(new RewriteRulesPass("canonicalize", CanonicalizationRules.All).Run(model, context).Modified);

        Assert.That(GraphPrinter.Print(model.Graph), Is.EqualTo("""
            input %x: float32[2,3]
            %h = MatMul(%x, %fc.weight)
            %scale = Constant()  {value=float32[]}
            %s = Mul(%h, %scale)
            %shape = Constant()  {value=int64[2]}
            %y = Reshape(%s, %shape)
            %bias_out = Constant()  {value=float32[2]}
            output %y
            output %bias_out

            """.ReplaceLineEndings()));
        Assert.That(model.Graph.Lookup("fc.weight")!.Initializer, Is.Not.Null);
        Assert.That(context.Diagnostics.Select(d => d.Message), Does.Contain("constant-node-to-initializer declined at node 'exposed': its output is a graph output"));
        Assert.That(Ort.Run(Ort.Bytes(model), "x", input, [2, 3]), Is.EqualTo(before));
    }
}
