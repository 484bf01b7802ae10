using OnnxViTQ.Capture;
using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Calibration;

/// <summary>Exports without a dynamic batch axis: batches are sized to the model and the last
/// one is padded, so sample counts that do not divide the batch still work.</summary>
public class FixedBatchTests
{
    private static Model WithFixedBatch(int batch)
    {
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var input = model.Graph.Inputs.Single();
        input.Type = new TensorTypeInfo(DataType.Float, [Dim.Known(batch), .. input.Type!.Shape!.Skip(1)]);
        return model;
    }

    [Test]
    public void EvaluationPadsTheLastBatchAndDropsThePadding()
    {
        var fixed4 = WithFixedBatch(4);
        var dynamic = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var source = new NpyTensorSource(Repo.Calibration, null);
        var ten = source.Take(10);

        var expected = ClassificationEvaluator.Predict(dynamic, "dynamic", ten, batchSize: 64);
        var actual = ClassificationEvaluator.Predict(fixed4, "fixed", ten, batchSize: 64);

        Assert.That(actual, Is.EqualTo(expected));
        Assert.That(actual, Has.Length.EqualTo(10));
    }

    [Test]
    public void CalibrationCountsOnlyRealSamples()
    {
        var model = WithFixedBatch(4);
        var softmax = model.Graph.Nodes.First(n => n.OpType == "Softmax").Output().Name;
        var observer = new MinMaxObserver();
        using var capture = new ActivationCapture(model, [softmax], "fixed");
        capture.Run(new NpyTensorSource(Repo.Calibration, null), new Dictionary<string, IReadOnlyList<IObserver>> { [softmax] = [observer] }, 32, 10);
        Assert.That(capture.SamplesSeen, Is.EqualTo(10));
        Assert.That(observer.Count, Is.EqualTo(12L * 4 * 50 * 50), "3 batches of 4 ran (2 padded samples)");
    }
}
