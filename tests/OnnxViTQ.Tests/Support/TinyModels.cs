using OnnxViTQ.Ir;

namespace OnnxViTQ.Tests.Support;

/// <summary>Small graphs built with the IR API, for golden pass tests. Real exports are tested
/// separately (reference models); these isolate one construct each.</summary>
internal static class TinyModels
{
    public static float[] Random(int n, int seed, float scale = 1f)
    {
        var rng = new System.Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();
    }

    public static Model NewModel(Graph g, long opset = 17) => new(g, 8, [new OpsetImport("", opset)]);

    /// <summary>y = x[B,T,K] · W[K,N] (MatMul with a constant weight).</summary>
    public static Model MatMul(int t = 4, int k = 8, int n = 6, long opset = 17)
    {
        var g = new Graph("matmul");
        var x = g.AddInput("x", new TensorTypeInfo(DataType.Float, [Dim.Named("batch"), Dim.Known(t), Dim.Known(k)]));
        var w = g.AddInitializer("w", Tensor.FromFloats([k, n], Random(k * n, 1)));
        var y = g.AddNode("MatMul", [x, w], ["y"], name: "linear").Output();
        y.Type = new TensorTypeInfo(DataType.Float, [Dim.Named("batch"), Dim.Known(t), Dim.Known(n)]);
        g.AddOutput(y);
        return NewModel(g, opset);
    }

    /// <summary>
    /// One attention head as PyTorch exports it: q = x·Wq, k = x·Wk, v = x·Wv,
    /// p = Softmax(q·kᵀ), o = Gemm(p·v reshaped, Wo, transB=1). Also keeps a residual use of x
    /// (Add) that must stay float.
    /// </summary>
    public static Model Attention(int t = 5, int c = 8)
    {
        var g = new Graph("attention");
        var x = g.AddInput("x", new TensorTypeInfo(DataType.Float, [Dim.Known(1), Dim.Known(t), Dim.Known(c)]));
        Value Linear(string name, int seed) =>
            g.AddNode("MatMul", [x, g.AddInitializer($"w_{name}", Tensor.FromFloats([c, c], Random(c * c, seed, 0.5f)))], [name], name: $"{name}_proj").Output();
        var q = Linear("q", 2);
        var k = Linear("k", 3);
        var v = Linear("v", 4);
        var kt = g.AddNode("Transpose", [k], ["k_t"], [AttributeValue.Ints("perm", [0, 2, 1])]).Output();
        var scores = g.AddNode("MatMul", [q, kt], ["scores"], name: "qk").Output();
        var p = g.AddNode("Softmax", [scores], ["probs"], [AttributeValue.Int("axis", -1)]).Output();
        var ctx = g.AddNode("MatMul", [p, v], ["context"], name: "pv").Output();
        var flat = g.AddNode("Reshape", [ctx, g.AddInitializer("flat_shape", Tensor.FromInt64s([2], [t, c]))], ["context_2d"]).Output();
        var wo = g.AddInitializer("w_o", Tensor.FromFloats([c, c], Random(c * c, 5, 0.5f)));
        var bo = g.AddInitializer("b_o", Tensor.FromFloats([c], Random(c, 6, 0.1f)));
        var o = g.AddNode("Gemm", [flat, wo, bo], ["out_2d"], [AttributeValue.Int("transB", 1)], name: "out_proj").Output();
        var o3 = g.AddNode("Reshape", [o, g.AddInitializer("shape_3d", Tensor.FromInt64s([3], [1, t, c]))], ["out"]).Output();
        var y = g.AddNode("Add", [o3, x], ["y"], name: "residual").Output();
        y.Type = new TensorTypeInfo(DataType.Float, [Dim.Known(1), Dim.Known(t), Dim.Known(c)]);
        g.AddOutput(y);
        return NewModel(g);
    }
}
