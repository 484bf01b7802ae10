using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.PassInfra;

public class PassManagerTests
{
    private sealed class LambdaPass(string name, Func<Model, PassContext, PassResult> run, PassContract? contract = null) : IPass
    {
        public string Name => name;
        public PassContract Contract => contract ?? PassContract.Anywhere;
        public PassResult Run(Model model, PassContext context) => run(model, context);
    }

    private static IPass Nop(string name) => new LambdaPass(name, (_, _) => PassResult.Unchanged);

    [Test]
    public void RunsInOrderAndReportsTimingsAndModifiedFlags()
    {
        var order = new List<string>();
        var passes = new IPass[]
        {
            new LambdaPass("a", (_, _) => { order.Add("a"); return PassResult.Unchanged; }),
            new LambdaPass("b", (m, _) => { order.Add("b"); m.Graph.AddNode("Relu", [m.Graph.Lookup("y")!], ["z"]); return PassResult.Changed; }),
        };
        var timings = new PassManager(passes).Run(TinyModels.MatMul(), new PassContext());
        Assert.That(order, Is.EqualTo(new[] { "a", "b" }));
        Assert.That(timings.Select(t => (t.Pass, t.Modified)), Is.EqualTo(new[] { ("a", false), ("b", true) }));
    }

    [Test]
    public void APassThatBreaksTheGraphIsNamedWithThePassesBeforeIt()
    {
        var breaker = new LambdaPass("break-things", (m, _) =>
        {
            m.Graph.Lookup("x")!.UseList.Clear();
            return PassResult.Changed;
        });
        var manager = new PassManager([Nop("first"), Nop("second"), breaker, Nop("never")]);

        var e = Assert.Throws<PassFailedException>(() => manager.Run(TinyModels.MatMul(), new PassContext()))!;
        Assert.That(e.Pass, Is.EqualTo("break-things"));
        Assert.That(e.PassesBefore, Is.EqualTo(new[] { "first", "second" }));
        Assert.That(e.Message, Does.StartWith("pass 'break-things' failed (after first, second): left an invalid graph"));
    }

    [Test]
    public void AnExceptionInsideAPassIsWrappedWithItsName()
    {
        var manager = new PassManager([Nop("ok"), new LambdaPass("boom", (_, _) => throw new InvalidOperationException("bad state"))]);
        var e = Assert.Throws<PassFailedException>(() => manager.Run(TinyModels.MatMul(), new PassContext()))!;
        Assert.That(e.Message, Is.EqualTo("pass 'boom' failed (after ok): bad state"));
    }

    [Test]
    public void UserInputErrorsPassThroughUnchanged()
    {
        var manager = new PassManager([new LambdaPass("reader", (_, _) => throw new OnnxViTQException("file 'x.npy' does not exist"))]);
        var e = Assert.Throws<OnnxViTQException>(() => manager.Run(TinyModels.MatMul(), new PassContext()))!;
        Assert.That(e.Message, Is.EqualTo("file 'x.npy' does not exist"));
    }

    [Test]
    public void MissingResultsOfEarlierPassesAreReportedByName()
    {
        var manager = new PassManager([new LambdaPass("needs-plan", (_, c) => { c.Get<List<int>>(); return PassResult.Unchanged; })]);
        var e = Assert.Throws<PassFailedException>(() => manager.Run(TinyModels.MatMul(), new PassContext()))!;
        Assert.That(e.Message, Does.Contain("needs List`1").And.Contain("pass order"));
    }
}
