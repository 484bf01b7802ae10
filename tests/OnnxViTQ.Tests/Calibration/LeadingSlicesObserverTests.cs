using OnnxViTQ.Observers;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Calibration;

public class LeadingSlicesObserverTests
{
    [Test]
    public void KeepsTheFirstSamplesAcrossBatchesInOrder()
    {
        var o = new LeadingSlicesObserver(maxSlices: 3, tensor: "q");
        var first = TinyModels.Random(2 * 4 * 5, 1);
        var second = TinyModels.Random(2 * 4 * 5, 2);
        o.Observe(first, [2, 4, 5]);
        o.Observe(second, [2, 4, 5]);
        o.Observe(TinyModels.Random(2 * 4 * 5, 3), [2, 4, 5]);
        Assert.That(o.Count, Is.EqualTo(3));
        Assert.That(o.Shape, Is.EqualTo(new long[] { 3, 4, 5 }));
        Assert.That(o.Data.ToArray(), Is.EqualTo(first.Concat(second.Take(20)).ToArray()));
    }

    [Test]
    public void TheElementBudgetCapsTheSlicesButKeepsOne()
    {
        var o = new LeadingSlicesObserver(maxSlices: 8, maxElements: 50);
        o.Observe(TinyModels.Random(4 * 20, 1), [4, 20]);
        Assert.That(o.Count, Is.EqualTo(2));
        var big = new LeadingSlicesObserver(maxSlices: 8, maxElements: 10);
        big.Observe(TinyModels.Random(2 * 20, 1), [2, 20]);
        Assert.That(big.Count, Is.EqualTo(1));
    }

    [Test]
    public void RejectsAChangedSampleShapeAndNonFiniteValues()
    {
        var o = new LeadingSlicesObserver(tensor: "k");
        o.Observe(new float[6], [1, 2, 3]);
        Assert.That(() => o.Observe(new float[8], [1, 2, 4]), Throws.TypeOf<OnnxViTQException>().With.Message.Contains("'k'"));
        var n = new LeadingSlicesObserver(tensor: "v");
        Assert.That(() => n.Observe([1, float.NaN], [1, 2]), Throws.TypeOf<OnnxViTQException>().With.Message.Contains("'v'"));
    }
}
