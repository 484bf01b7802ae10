using OnnxViTQ.Passes.Search;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Search;

public class SimilarityObjectiveTests
{
    [Test]
    public void PearsonOfIdenticalRowsIsOne()
    {
        var y = TinyModels.Random(4 * 16, 1);
        Assert.That(SimilarityObjective.MeanPearson(y, y, 4, 16), Is.EqualTo(1).Within(1e-12));
    }

    [Test]
    public void PearsonIgnoresAPositiveAffineMapAndSeesASignFlip()
    {
        var y = TinyModels.Random(32, 2);
        Assert.That(SimilarityObjective.Pearson(y, y.Select(v => 3 * v + 5).ToArray()), Is.EqualTo(1).Within(1e-9));
        Assert.That(SimilarityObjective.Pearson(y, y.Select(v => -v).ToArray()), Is.EqualTo(-1).Within(1e-9));
    }

    /// <summary>Why the linear layers' search takes one correlation over the whole output: a clip
    /// that scales one row down keeps every row's own correlation at 1.</summary>
    [Test]
    public void OnlyTheJointPearsonSeesARowScaledDown()
    {
        var y = TinyModels.Random(4 * 16, 4);
        var yq = (float[])y.Clone();
        for (int i = 16; i < 32; i++) yq[i] *= 0.5f;
        Assert.That(SimilarityObjective.MeanPearson(y, yq, 4, 16), Is.EqualTo(1).Within(1e-9));
        Assert.That(SimilarityObjective.MeanPearson(y, yq, 1, 64), Is.LessThan(0.99));
    }

    [Test]
    public void CoarserQuantizationCorrelatesLess()
    {
        var y = TinyModels.Random(256, 3);
        float[] Round(float step) => y.Select(v => MathF.Round(v / step) * step).ToArray();
        double fine = SimilarityObjective.Pearson(y, Round(0.01f)), coarse = SimilarityObjective.Pearson(y, Round(0.5f));
        Assert.That(fine, Is.GreaterThan(coarse));
        Assert.That(fine, Is.LessThan(1));
    }

    [Test]
    public void ConstantRows()
    {
        float[] c = [2, 2, 2];
        Assert.That(SimilarityObjective.Pearson(c, c), Is.EqualTo(1));
        Assert.That(SimilarityObjective.Pearson(c, [1, 2, 3]), Is.EqualTo(0));
    }

    [Test]
    public void RankingLossIsZeroForOrderPreservingOutputs()
    {
        float[] a = [0.1f, 0.5f, 0.2f, 0.9f, 0.5f];
        Assert.That(SimilarityObjective.RankingLoss(a, a.Select(v => 2 * v * v).ToArray(), theta: 0), Is.Zero, "a monotone map keeps every order");
        Assert.That(SimilarityObjective.RankingLoss(a, a, theta: 0), Is.Zero);
    }

    [Test]
    public void RankingLossCountsReversedAndTiedPairs()
    {
        float[] a = [0.1f, 0.2f, 0.3f];
        // ranks of the first two swapped: one reversed pair with a gap of 0.1
        Assert.That(SimilarityObjective.RankingLoss(a, [0.2f, 0.1f, 0.3f], theta: 0), Is.EqualTo(0.1).Within(1e-6));
        // quantization merging all three: every pair loses its margin θ
        Assert.That(SimilarityObjective.RankingLoss(a, [0.2f, 0.2f, 0.2f], theta: 0.05), Is.EqualTo(3 * 0.05).Within(1e-6));
    }

    [Test]
    public void NormalisedRankingLossIsZeroForOrderPreservingRowsAndScaleFree()
    {
        var y = TinyModels.Random(3 * 20, 11);
        var pairs = SimilarityObjective.RankingPairs(20, 1000);
        Assert.That(SimilarityObjective.MeanRankingLoss(y, y.Select(v => MathF.Exp(v) * 4 - 1).ToArray(), 3, 20, pairs), Is.EqualTo(0), "a monotone map keeps every order");
        var reversed = y.Select(v => -v).ToArray();
        double loss = SimilarityObjective.MeanRankingLoss(y, reversed, 3, 20, pairs);
        Assert.That(loss, Is.GreaterThan(0));
        Assert.That(SimilarityObjective.MeanRankingLoss(y.Select(v => 10 * v).ToArray(), reversed.Select(v => 10 * v).ToArray(), 3, 20, pairs),
            Is.EqualTo(loss).Within(1e-6 * loss), "scaling both rows leaves it unchanged");
        Assert.That(SimilarityObjective.Score(y, reversed, 3, 20, gamma: 2, pairs), Is.EqualTo(SimilarityObjective.MeanPearson(y, reversed, 3, 20) - 2 * loss).Within(1e-12));
        Assert.That(SimilarityObjective.Score(y, reversed, 3, 20, gamma: 2, pairs: null), Is.EqualTo(SimilarityObjective.MeanPearson(y, reversed, 3, 20)));
    }

    [Test]
    public void RankingPairsAreAllPairsForShortRowsAndAFixedSampleForLongOnes()
    {
        var all = SimilarityObjective.RankingPairs(6, 100);
        Assert.That(all, Has.Count.EqualTo(15));
        Assert.That(all.Distinct().Count(), Is.EqualTo(15));
        var sample = SimilarityObjective.RankingPairs(197, 2048);
        Assert.That(sample, Has.Count.EqualTo(2048));
        Assert.That(sample.All(p => p.P < p.Q && p.P >= 0 && p.Q < 197));
        Assert.That(SimilarityObjective.RankingPairs(197, 2048), Is.EqualTo(sample), "deterministic");
    }
}
