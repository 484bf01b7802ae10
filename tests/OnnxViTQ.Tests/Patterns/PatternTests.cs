using OnnxViTQ.Patterns;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Patterns;

public class PatternTests
{
    private static readonly OpPattern LinearWithWeight = Pattern.Op("MatMul", Pattern.Dynamic("x"), Pattern.Constant("w")).Named("mm");

    [Test]
    public void MatchesAndCaptures()
    {
        var g = TinyModels.Attention().Graph;
        var matches = PatternMatcher.FindAll(g, LinearWithWeight);
        Assert.That(matches.Select(m => m.Node("mm").Name), Is.EqualTo(new[] { "q_proj", "k_proj", "v_proj" }));
        Assert.That(matches[0].Value("w").Name, Is.EqualTo("w_q"));
        Assert.That(matches[0].Value("x").Name, Is.EqualTo("x"));
    }

    [Test]
    public void AFailedMatchSaysWhy()
    {
        var g = TinyModels.Attention().Graph;
        var qk = g.Nodes.Single(n => n.Name == "qk");
        var result = LinearWithWeight.MatchAt(qk);
        Assert.That(result.Success, Is.False);
        Assert.That(result.Reason, Is.EqualTo("'k_t' is not a constant"));

        var softmax = g.Nodes.Single(n => n.OpType == "Softmax");
        Assert.That(LinearWithWeight.MatchAt(softmax).Reason, Does.Contain("is Softmax, not MatMul"));
    }

    [Test]
    public void NestedPatternsFollowProducers()
    {
        // Softmax(MatMul(q, Transpose(k))) -- the attention-score pattern role tagging will use
        var scores = Pattern.Op("Softmax", Pattern.Op("MatMul", Pattern.Any("q"), Pattern.Op("Transpose", Pattern.Any("k")))).Named("softmax");
        var match = PatternMatcher.FindAll(TinyModels.Attention().Graph, scores).Single();
        Assert.That((match.Value("q").Name, match.Value("k").Name), Is.EqualTo(("q", "k")));
    }

    [Test]
    public void CommutativeOpsMatchEitherOrder()
    {
        // residual Add(out, x): the pattern lists x first
        var g = TinyModels.Attention().Graph;
        var add = g.Nodes.Single(n => n.OpType == "Add");
        var strict = Pattern.Op("Add", Pattern.Dynamic("input"), Pattern.Op("Reshape", Pattern.Any(), Pattern.Constant()));
        Assert.That(strict.MatchAt(add).Success, Is.False);
        Assert.That(Pattern.Op("Add", Pattern.Dynamic("input"), Pattern.Op("Reshape", Pattern.Any(), Pattern.Constant())).Commutative().MatchAt(add).Success);
    }

    [Test]
    public void ARepeatedCaptureMustBindTheSameValue()
    {
        var g = TinyModels.Attention().Graph;
        var pv = g.Nodes.Single(n => n.Name == "pv");
        var same = Pattern.Op("MatMul", Pattern.Any("t"), Pattern.Any("t"));
        Assert.That(same.MatchAt(pv).Reason, Does.Contain("'t' is bound to 'probs', not 'v'"));
    }

    [Test]
    public void WhereConditionsReportTheirReason()
    {
        var g = TinyModels.Attention().Graph;
        var gemm = g.Nodes.Single(n => n.OpType == "Gemm");
        var noTrans = Pattern.Op("Gemm", Pattern.Any(), Pattern.Constant()).Where(n => n.GetInt("transB", 0) == 0, "B is transposed");
        Assert.That(noTrans.MatchAt(gemm).Reason, Is.EqualTo("node 'out_proj': B is transposed"));
    }
}
