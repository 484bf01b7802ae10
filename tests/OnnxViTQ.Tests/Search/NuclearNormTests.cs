using OnnxViTQ.Passes.Search;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Search;

public class NuclearNormTests
{
    [Test]
    public void DiagonalMatrixSumsItsAbsoluteDiagonal()
    {
        float[] a = [3, 0, 0, 0, -2, 0, 0, 0, 0.5f, 0, 0, 0]; // 4×3, singular values 3, 2, 0.5
        Assert.That(NuclearNorm.Of(a, 4, 3), Is.EqualTo(5.5).Within(1e-9));
    }

    [Test]
    public void RankOneMatrixIsTheProductOfNorms()
    {
        var u = TinyModels.Random(7, 1);
        var v = TinyModels.Random(5, 2);
        var a = new float[35];
        for (int i = 0; i < 7; i++) for (int j = 0; j < 5; j++) a[i * 5 + j] = u[i] * v[j];
        double expected = Math.Sqrt(u.Sum(x => (double)x * x)) * Math.Sqrt(v.Sum(x => (double)x * x));
        Assert.That(NuclearNorm.Of(a, 7, 5), Is.EqualTo(expected).Within(1e-5 * expected));
    }

    [Test]
    public void TransposeHasTheSameNorm()
    {
        var a = TinyModels.Random(6 * 9, 3);
        var t = new float[a.Length];
        for (int i = 0; i < 6; i++) for (int j = 0; j < 9; j++) t[j * 6 + i] = a[i * 9 + j];
        Assert.That(NuclearNorm.Of(t, 9, 6), Is.EqualTo(NuclearNorm.Of(a, 6, 9)).Within(1e-9));
    }
}
