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
