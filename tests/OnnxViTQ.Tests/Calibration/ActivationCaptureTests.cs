using OnnxViTQ.Capture;
using OnnxViTQ.Data;
using OnnxViTQ.Observers;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Calibration;

public class ActivationCaptureTests
{
    [Test]
    public void CapturedTensorsAreTheModelsIntermediates()
    {
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var softmax = model.Graph.Nodes.First(n => n.OpType == "Softmax").Output();
        var matmulIn = model.Graph.Nodes.First(n => n.OpType == "MatMul").Input(0)!;
        var minmax = new MinMaxObserver();
        var perToken = new PerTokenObserver();
        var matmulRange = new MinMaxObserver();

        using var capture = new ActivationCapture(model, [softmax.Name, matmulIn.Name], "vit");
        capture.Run(new NpyTensorSource(Repo.Calibration, null),
            new Dictionary<string, IReadOnlyList<IObserver>> { [softmax.Name] = [minmax, perToken], [matmulIn.Name] = [matmulRange] },
            batchSize: 16, maxSamples: 64);

        Assert.That(capture.SamplesSeen, Is.EqualTo(64));
        // attention probabilities: in [0, 1], and rows of 50 tokens (49 patches + class token)
        Assert.That(minmax.Min, Is.GreaterThanOrEqualTo(0f));
        Assert.That(minmax.Max, Is.LessThanOrEqualTo(1f).And.GreaterThan(0.1f));
        Assert.That(minmax.Count, Is.EqualTo(64L * 4 * 50 * 50), "batch × heads × tokens × tokens");
        Assert.That(perToken.Tokens, Is.EqualTo(50));
        Assert.That(matmulRange.Max, Is.GreaterThan(matmulRange.Min));
    }

    [Test]
    public void ShapeMismatchNamesTheDataAndTheInput()
    {
        using var tmp = new TempDir();
        NpyFile.Write(tmp.File("gray.npy"), new float[4 * 28 * 28].AsSpan(), 4, 1, 28, 28);
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        using var capture = new ActivationCapture(model, [model.Graph.Nodes.First(n => n.OpType == "Softmax").Output().Name], "vit");

        var e = Assert.Throws<OnnxViTQException>(() => capture.Run(new NpyTensorSource(tmp.File("gray.npy"), null),
            new Dictionary<string, IReadOnlyList<IObserver>>(), 8, 8))!;
        Assert.That(e.Message, Does.Contain("gray.npy").And.Contain("[1,28,28]").And.Contain("pixel_values").And.Contain("[3,28,28]"));
    }

    /// <summary>Observers hold fixed-size state, and capture releases each batch: memory retained
    /// after 4 batches and after 32 batches is the same (within GC noise).</summary>
    [Test]
    public void RetainedMemoryDoesNotGrowWithSamples()
    {
        using var tmp = new TempDir();
        var (data, _) = Ort.CalibrationSamples(512);
        var twice = data.Concat(data).ToArray();
        NpyFile.Write(tmp.File("calib_1024.npy"), twice.AsSpan(), 1024, 3, 28, 28);
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var names = model.Graph.Nodes.Where(n => n.OpType == "MatMul").Select(n => n.Input(0)!.Name).Distinct().ToList();
        var observers = names.ToDictionary(n => n, _ => (IReadOnlyList<IObserver>)[new HistogramObserver(), new PerTokenObserver()]);

        var retained = new Dictionary<long, long>();
        using var capture = new ActivationCapture(model, names, "vit")
        {
            AfterBatch = done =>
            {
                if (done is 128 or 1024) retained[done] = GC.GetTotalMemory(forceFullCollection: true);
            },
        };
        capture.Run(new NpyTensorSource(tmp.File("calib_1024.npy"), null), observers, batchSize: 32, maxSamples: 1024);

        long growth = retained[1024] - retained[128];
        TestContext.Out.WriteLine($"retained after 128 samples: {retained[128] / 1024} KiB, after 1024: {retained[1024] / 1024} KiB");
        // one batch of captured activations alone is several MiB; 896 more samples kept would be far more
        Assert.That(growth, Is.LessThan(1 << 20));
    }
}
