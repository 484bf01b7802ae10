using OnnxViTQ.Cli;
using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Calibration;

/// <summary>Inputs that used to be accepted and misread, or hang.</summary>
public class InputValidationTests
{
    [Test]
    public void AHistogramRejectsInfinityInsteadOfGrowingForever()
    {
        var h = new HistogramObserver(tensor: "/blocks.3/attn/Softmax_output_0");
        h.Observe([0.5f, 1f], [1, 2]);
        var task = Task.Run(() => Assert.Throws<OnnxViTQException>(() => h.Observe([0.2f, float.PositiveInfinity], [1, 2]))!);
        Assert.That(task.Wait(TimeSpan.FromSeconds(10)), "returns (it used to loop forever doubling its range)");
        Assert.That(task.Result.Message, Is.EqualTo("tensor '/blocks.3/attn/Softmax_output_0' contains +∞ at element 1; check the input data and preprocessing"));
        Assert.That(Assert.Throws<OnnxViTQException>(() => new MinMaxObserver("t").Observe([float.NegativeInfinity], [1]))!.Message, Does.Contain("'t' contains −∞"));
    }

    [TestCase("float16")]
    [TestCase("double")]
    public void NonFloat32ImageInputsAreRefusedUpFront(string typeName)
    {
        var type = typeName == "float16" ? DataType.Float16 : DataType.Double;
        var g = new Graph("g");
        var x = g.AddInput("pixel_values", new TensorTypeInfo(type, [Dim.Named("batch"), Dim.Known(3), Dim.Known(28), Dim.Known(28)]));
        g.AddOutput(g.AddNode("Identity", [x], ["y"]).Output());
        var e = Assert.Throws<OnnxViTQException>(() => ImageInput.Of(TinyModels.NewModel(g), "half.onnx"))!;
        Assert.That(e.Message, Is.EqualTo($"'half.onnx' input 'pixel_values' is {type.OnnxName()}; only float32 image inputs are supported (export the model in float32)"));
    }

    [Test]
    public void Int64LabelsAreReadExactly()
    {
        using var tmp = new TempDir();
        long[] labels = [0, 16_777_217, 1L << 40, -3];
        NpyFile.Write<long>(tmp.File("labels.npy"), labels, labels.Length);
        Assert.That(NpyFile.Open(tmp.File("labels.npy")).ReadAllInt64(), Is.EqualTo(labels), "2^24 + 1 does not survive float32");
        int[] small = [7, 16_777_217];
        NpyFile.Write<int>(tmp.File("small.npy"), small, small.Length);
        Assert.That(NpyFile.Open(tmp.File("small.npy")).ReadAllInt64(), Is.EqualTo(new long[] { 7, 16_777_217 }));
    }

    [Test]
    public void AgreementNeedsListsOfTheSameLength()
    {
        var e = Assert.Throws<OnnxViTQException>(() => ClassificationEvaluator.Agreement([1, 2, 3], [1, 2]))!;
        Assert.That(e.Message, Is.EqualTo("cannot compare 3 predictions with 2"));
    }

    [Test]
    public void TheSummarySaysPerTensorWhereAWeightHasNoChannelAxis()
    {
        var model = TinyModels.MatMul();
        var w = model.Graph.Lookup("w")!;
        var plan = new QuantizationPlan();
        var site = new QuantizationSite { Value = w, Uses = [new Use(w.Consumers[0].Node, 1)], Role = TensorRole.Weight, ChannelAxis = null };
        site = site with { Spec = QuantizerRegistry.Spec("uniform", 4, TensorRole.Weight) };
        plan.Add(site with { Parameters = site.Spec!.KindInfo.Fit(site, new FitContext(null)) });
        var lines = PlanSummary.Lines(plan).ToList();
        Assert.That(lines.Single(), Is.EqualTo(("weight", "1 uniform 4-bit per-tensor")));
    }
}
