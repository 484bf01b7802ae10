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

    /// <summary>A fixed batch of 0 (ONNX Runtime accepts it) made every calibration source step by
    /// 0 forever; 2^32 truncated to 0 as an int. Both are refused when the input is read.</summary>
    [TestCase(0L)]
    [TestCase(1L << 32)]
    public void AFixedBatchOfZeroIsRefusedInsteadOfLoopingForever(long batch)
    {
        var g = new Graph("g");
        var x = g.AddInput("pixel_values", new TensorTypeInfo(DataType.Float, [Dim.Known(batch), Dim.Known(3), Dim.Known(28), Dim.Known(28)]));
        g.AddOutput(g.AddNode("Identity", [x], ["y"]).Output());
        var e = Assert.Throws<OnnxViTQException>(() => ImageInput.Of(TinyModels.NewModel(g), "m.onnx"))!;
        Assert.That(e.Message, Is.EqualTo($"'m.onnx' input 'pixel_values' has a fixed batch of {batch}; it must be 1 to 65536 (or dynamic)"));
    }

    /// <summary>Preprocessing metadata is part of an untrusted file: a crop past 1 used to crop
    /// outside the resized image (an index error, exit 70), a non-number threw a FormatException.</summary>
    [TestCase("onnxvitq.preprocess.crop_pct", "1.5", "crop_pct = '1.5' must be a number in (0, 1]")]
    [TestCase("onnxvitq.preprocess.crop_pct", "wide", "crop_pct = 'wide' must be a number in (0, 1]")]
    [TestCase("onnxvitq.preprocess.mean", "0.5,x,0.5", "mean = '0.5,x,0.5' is not a comma-separated list of numbers")]
    [TestCase("onnxvitq.preprocess.std", "0.2,0,0.2", "std = '0.2,0,0.2' must be positive numbers")]
    public void BadPreprocessingMetadataIsAClearError(string key, string value, string message)
    {
        var model = OnnxViTQ.Serialization.OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        model.SetMetadata(key, value);
        var e = Assert.Throws<OnnxViTQException>(() => ImagePreprocessing.ForModel(model, 3, 28, 28))!;
        Assert.That(e.Message, Does.Contain(message));
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

    /// <summary>An image header is a claim: a 28×28 PNG whose header says 16000×16000 asks the decoder
    /// for 768 MB of RGB (under its own 1 GiB limit). The header is read first and bounded; a file
    /// the decoder cannot read is bad input named by path.</summary>
    [Test]
    public void ImageHeadersAreBoundedBeforeDecoding()
    {
        using var tmp = new TempDir();
        var png = File.ReadAllBytes(Directory.GetFiles(Repo.PngFolder, "*.png", SearchOption.AllDirectories).Order().First());
        var lying = (byte[])png.Clone();
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(lying.AsSpan(16), 16000); // IHDR width
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(lying.AsSpan(20), 16000); // IHDR height
        File.WriteAllBytes(tmp.File("big.png"), lying);
        var e = Assert.Throws<OnnxViTQException>(() => ImageFolderSource.Decode(tmp.File("big.png")))!;
        Assert.That(e.Message, Is.EqualTo($"image '{tmp.File("big.png")}' is 16000×16000; images up to 32768 pixels a side and 134217728 pixels in all are read"));

        File.WriteAllBytes(tmp.File("cut.png"), png[..40]);
        Assert.That(Assert.Throws<OnnxViTQException>(() => ImageFolderSource.Decode(tmp.File("cut.png")))!.Message, Does.StartWith($"cannot decode image '{tmp.File("cut.png")}'"));
    }

    /// <summary>Per-image and per-batch sizes multiply into one float array: dims each under the
    /// limit still overflowed an int (exit 70) where the batch buffer was sized.</summary>
    [Test]
    public void InputsTooLargeForOneBatchBufferAreRefused()
    {
        var g = new Graph("g");
        var x = g.AddInput("pixel_values", new TensorTypeInfo(DataType.Float, [Dim.Named("batch"), Dim.Known(3), Dim.Known(1 << 20), Dim.Known(1 << 20)]));
        g.AddOutput(g.AddNode("Identity", [x], ["y"]).Output());
        Assert.That(Assert.Throws<OnnxViTQException>(() => ImageInput.Of(TinyModels.NewModel(g), "m.onnx"))!.Message,
            Is.EqualTo("'m.onnx' input 'pixel_values' has shape [batch,3,1048576,1048576]: 3298534883328 values per image, more than the 67108864 this tool feeds"));

        var fixedBatch = new Graph("g");
        var y = fixedBatch.AddInput("pixel_values", new TensorTypeInfo(DataType.Float, [Dim.Known(65536), Dim.Known(3), Dim.Known(224), Dim.Known(224)]));
        fixedBatch.AddOutput(fixedBatch.AddNode("Identity", [y], ["z"]).Output());
        Assert.That(Assert.Throws<OnnxViTQException>(() => ImageInput.Of(TinyModels.NewModel(fixedBatch), "b.onnx"))!.Message,
            Does.StartWith("'b.onnx': a batch of 65536 images of [3,224,224] is 9865003008 values"));
    }
}
