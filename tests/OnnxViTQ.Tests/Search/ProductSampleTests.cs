using OnnxViTQ.Passes;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Search;

public class ProductSampleTests
{
    [TestCase(1, 7, 5, 3, 100)]
    [TestCase(6, 13, 9, 13, 20)]
    [TestCase(4, 1, 17, 2, 3)]
    public void SelectedRowsMatchATripleLoop(int pairs, int m, int k, int n, int maxRows)
    {
        var a = TinyModels.Random(pairs * m * k, 1);
        var b = TinyModels.Random(pairs * k * n, 2);
        var sample = new ProductSample(a, [pairs, m, k], b, [pairs, k, n], pairs, m, k, n, maxRows);
        Assert.That(sample.Rows, Is.EqualTo(pairs * sample.RowsPerPair));
        Assert.That(sample.RowsPerPair, Is.InRange(1, m));
        var output = sample.Multiply(a, b);
        int perPair = sample.RowsPerPair;
        for (int p = 0; p < pairs; p++)
            for (int ri = 0; ri < perPair; ri++)
            {
                int row = (int)((long)ri * m / perPair);
                for (int j = 0; j < n; j++)
                {
                    double expected = 0;
                    for (int i = 0; i < k; i++) expected += a[(p * m + row) * k + i] * b[(p * k + i) * n + j];
                    Assert.That(output[(p * perPair + ri) * n + j], Is.EqualTo(expected).Within(1e-4), $"pair {p} row {row} column {j}");
                }
            }
    }
}

public class ActivationProductTests
{
    /// <summary>The scale the scores get before the Softmax: Mul and Div by scalar constants
    /// right after the product; anything else (an added bias) ends the chain.</summary>
    [Test]
    public void ScoreScaleFollowsScalarMulAndDiv()
    {
        var g = new OnnxViTQ.Ir.Graph("scores");
        var q = g.AddInput("q", OnnxViTQ.Ir.TensorTypeInfo.Of(OnnxViTQ.Ir.DataType.Float, 1, 4, 8));
        var k = g.AddInput("k", OnnxViTQ.Ir.TensorTypeInfo.Of(OnnxViTQ.Ir.DataType.Float, 1, 8, 4));
        var mm = g.AddNode("MatMul", [q, k], ["s"], name: "qk");
        var mul = g.AddNode("Mul", [g.AddInitializer("c", OnnxViTQ.Ir.Tensor.FromFloats([], [0.5f])), mm.Output()], ["scaled"]);
        var div = g.AddNode("Div", [mul.Output(), g.AddInitializer("d", OnnxViTQ.Ir.Tensor.FromFloats([1], [4f]))], ["scaled2"]);
        var add = g.AddNode("Add", [div.Output(), g.AddInitializer("bias", OnnxViTQ.Ir.Tensor.FromFloats([4], [1, 2, 3, 4]))], ["biased"]);
        var softmax = g.AddNode("Softmax", [add.Output()], ["p"]);
        g.AddOutput(softmax.Output());
        OnnxViTQ.Quantization.QuantizationSite Site(OnnxViTQ.Ir.Value v, int i) =>
            new() { Value = v, Uses = [new OnnxViTQ.Ir.Use(mm, i)], Role = i == 0 ? OnnxViTQ.Quantization.TensorRole.Query : OnnxViTQ.Quantization.TensorRole.Key };
        var product = new ActivationProduct(mm, Site(q, 0), Site(k, 1));
        Assert.That(product.IsAttentionScores);
        Assert.That(product.ScoreScale, Is.EqualTo(0.125f));
        var maps = ActivationProduct.AttentionMaps([0, 0, 0, 0, 1, 2, 3, 4], 4, 2);
        Assert.That(maps.Take(4), Is.All.EqualTo(0.25f).Within(1e-6));
        Assert.That(maps.Skip(4).Sum(), Is.EqualTo(1).Within(1e-6));
        Assert.That(maps[7] / maps[6], Is.EqualTo(MathF.Exp(2)).Within(1e-3), "the scale multiplies the scores");
    }
}
