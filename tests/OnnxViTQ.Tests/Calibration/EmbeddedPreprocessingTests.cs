using System.IO.Compression;
using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Calibration;

/// <summary>
/// Image-bytes models (<c>--embed-preprocessing</c>, <c>onnxvitq preprocess</c>): the tensor the
/// embedded pipeline (ONNX Runtime Extensions' DecodeImage, then standard ONNX ops) hands the
/// network is the C# preprocessing's within one 8-bit code per pixel — on the bundled PNGs (no
/// resize), with a crop fraction (upscale then crop) and on larger non-square RGB images
/// (downscale) — and the image-bytes model classifies the bundled PNGs as the tensor-input model does.
/// </summary>
public class EmbeddedPreprocessingTests
{
    private static IReadOnlyList<string> Pngs => ImageFolderSource.FindImages(Repo.PngFolder);

    /// <summary>Logits and the preprocessed tensor of an image-bytes model for one encoded image.</summary>
    private static (float[] Logits, float[] Tensor) RunBytes(byte[] model, byte[] image)
    {
        using var session = OrtRuntime.CreateSession(model, "image-bytes model");
        using var x = OrtValue.CreateTensorValueFromMemory(image, [image.Length]);
        using var run = new RunOptions();
        using var results = session.Run(run, [session.InputNames[0]], [x], [session.OutputNames[0], EmbeddedPreprocessing.TensorName]);
        return (results[0].GetTensorDataAsSpan<float>().ToArray(), results[1].GetTensorDataAsSpan<float>().ToArray());
    }

    /// <summary>The model with its image input replaced by encoded bytes, the preprocessed tensor also an output.</summary>
    private static byte[] ImageBytesModel(Model model, ImagePreprocessing pre)
    {
        var input = ImageInput.Of(model, "m");
        EmbeddedPreprocessing.Embed(model, input, pre, "m");
        model.Graph.AddOutput(model.Graph.Lookup(EmbeddedPreprocessing.TensorName)!);
        return OnnxModelWriter.ToBytes(model);
    }

    /// <summary>What calibration computes for the same file (StbImageSharp, then ImagePreprocessing).</summary>
    private static float[] CSharpTensor(string file, ImagePreprocessing pre)
    {
        using var dir = new TempDir();
        File.Copy(file, dir.File(Path.GetFileName(file)));
        var source = new ImageFolderSource(dir.Path, pre);
        return source.ReadBatches(1).Single().Data.ToArray();
    }

    private static void AssertWithinOneCode(float[] embedded, float[] reference, ImagePreprocessing pre, string what)
    {
        Assert.That(embedded, Has.Length.EqualTo(reference.Length), what);
        int plane = pre.Height * pre.Width;
        double worst = 0;
        for (int i = 0; i < reference.Length; i++)
            worst = Math.Max(worst, Math.Abs(embedded[i] - reference[i]) * pre.Std[i / plane] * 255);
        Assert.That(worst, Is.LessThanOrEqualTo(1.0), $"{what}: largest difference {worst:0.###} codes");
        TestContext.Out.WriteLine($"{what}: largest difference {worst:0.####} codes");
    }

    private static int ArgMax(float[] v) => Array.IndexOf(v, v.Max());

    [Test]
    public void TheBundledPngsGiveTheCalibrationTensorAndTheSameClasses()
    {
        var fp32 = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var input = ImageInput.Of(fp32, "vit");
        var pre = new ImageDataOptions().Resolve(fp32, input);
        var bytesModel = ImageBytesModel(OnnxModelReader.Load(Repo.Model("vit.opset17.onnx")), pre);
        foreach (var png in Pngs)
        {
            var (logits, tensor) = RunBytes(bytesModel, File.ReadAllBytes(png));
            var reference = CSharpTensor(png, pre);
            AssertWithinOneCode(tensor, reference, pre, Path.GetFileName(png));
            var tensorLogits = Ort.Run(OnnxModelWriter.ToBytes(fp32), input.Name, reference, input.Shape(1))[0];
            Assert.That(ArgMax(logits), Is.EqualTo(ArgMax(tensorLogits)), Path.GetFileName(png));
        }
    }

    /// <summary>A crop fraction below 1: the 28×28 PNGs are upscaled to 32 on the short side, then cropped.</summary>
    [Test]
    public void ACropFractionResizesThenCrops()
    {
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var input = ImageInput.Of(model, "vit");
        var pre = new ImageDataOptions { CropFraction = 0.875f }.Resolve(model, input);
        var bytesModel = ImageBytesModel(model, pre);
        foreach (var png in Pngs.Take(4))
            AssertWithinOneCode(RunBytes(bytesModel, File.ReadAllBytes(png)).Tensor, CSharpTensor(png, pre), pre, $"{Path.GetFileName(png)}, crop 0.875");
    }

    /// <summary>Larger, non-square RGB images (both orientations), downscaled then cropped.</summary>
    [TestCase(40, 57)]
    [TestCase(61, 33)]
    public void LargerRgbImagesAreResizedAsCalibrationResizesThem(int height, int width)
    {
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var input = ImageInput.Of(model, "vit");
        var pre = new ImageDataOptions { CropFraction = 0.9f }.Resolve(model, input);
        var bytesModel = ImageBytesModel(model, pre);
        var rng = new Random(height * 100 + width);
        var rgb = new byte[height * width * 3];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                for (int c = 0; c < 3; c++)
                    rgb[(y * width + x) * 3 + c] = (byte)Math.Clamp(128 + 100 * Math.Sin(0.3 * x + 0.2 * y + c) + rng.Next(-20, 21), 0, 255);
        using var dir = new TempDir();
        string file = dir.File("image.png");
        File.WriteAllBytes(file, Png.Rgb(rgb, height, width));
        AssertWithinOneCode(RunBytes(bytesModel, File.ReadAllBytes(file)).Tensor, CSharpTensor(file, pre), pre, $"{height}×{width} RGB");
    }

    /// <summary>A non-square input (24×40) is resized to (⌊H/crop⌋, ⌊W/crop⌋) then cropped, in C# and in
    /// the model alike (the shorter-side rule used to leave the resized image narrower than the crop:
    /// an index error).</summary>
    [Test]
    public void NonSquareInputsAreResizedToCoverTheCrop()
    {
        var g = new Graph("non_square");
        var x = g.AddInput("pixel_values", new TensorTypeInfo(DataType.Float, [Dim.Named("batch"), Dim.Known(3), Dim.Known(24), Dim.Known(40)]));
        var y = g.AddNode("Identity", [x], ["logits"]).Output();
        y.Type = x.Type;
        g.AddOutput(y);
        var model = TinyModels.NewModel(g);
        var input = ImageInput.Of(model, "non_square");
        var pre = new ImageDataOptions { CropFraction = 0.9f }.Resolve(model, input);
        Assert.That(pre.ResizedSize(28, 28), Is.EqualTo((26f, 44f)));
        var bytesModel = ImageBytesModel(model, pre);
        foreach (var png in Pngs.Take(3))
            AssertWithinOneCode(RunBytes(bytesModel, File.ReadAllBytes(png)).Tensor, CSharpTensor(png, pre), pre, $"{Path.GetFileName(png)} as 24×40");
    }

    /// <summary>The issue's check: the default model quantized with --embed-preprocessing classifies
    /// the bundled PNGs exactly as the same plan with a tensor input does.</summary>
    [Test]
    public void AQuantizedImageBytesModelClassifiesThePngsAsTheTensorModel()
    {
        using var dir = new TempDir();
        var options = new QuantizationOptions { CalibrationSamples = 64 };
        OnnxQuantizer.QuantizeFile(Repo.Model("vit.opset17.onnx"), Repo.Calibration, dir.File("tensor.onnx"), options);
        OnnxQuantizer.QuantizeFile(Repo.Model("vit.opset17.onnx"), Repo.Calibration, dir.File("bytes.onnx"), options,
            new QuantizeFileSettings { EmbedPreprocessing = true });
        var bytesModel = OnnxModelReader.Load(dir.File("bytes.onnx"));
        Assert.That(EmbeddedPreprocessing.TakesImageBytes(bytesModel));
        var encoded = Evaluation.ClassificationEvaluator.PredictEncodedFiles(dir.File("bytes.onnx"), Pngs);
        var tensorModel = OnnxModelReader.Load(dir.File("tensor.onnx"));
        var input = ImageInput.Of(tensorModel, "tensor");
        var tensor = Evaluation.ClassificationEvaluator.PredictFile(dir.File("tensor.onnx"), input,
            new ImageFolderSource(Repo.PngFolder, new ImageDataOptions().Resolve(tensorModel, input)));
        Assert.That(encoded, Is.EqualTo(tensor));
        var labels = Pngs.Select(p => int.Parse(Path.GetFileNameWithoutExtension(p).Split('_')[1])).ToArray();
        TestContext.Out.WriteLine($"classes {string.Join(",", encoded)}; labels {string.Join(",", labels)}");
    }

    [Test]
    public void UnsuitableModelsAreRefused()
    {
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var input = ImageInput.Of(model, "vit") with { FixedBatch = 8 };
        var e = Assert.Throws<OnnxViTQException>(() => EmbeddedPreprocessing.Embed(model, input, new ImageDataOptions().Resolve(model, input), "vit.onnx"))!;
        Assert.That(e.Message, Does.Contain("has a fixed batch of 8; an image-bytes model decodes one image per run"));
        e = Assert.Throws<OnnxViTQException>(() => OnnxQuantizer.EmbedPreprocessing(Repo.Model("vit.opset17.onnx"), Repo.Model("vit.opset17.onnx")))!;
        Assert.That(e.Message, Does.Contain("is the input model"));
    }
}

/// <summary>A minimal PNG writer for test images (8-bit RGB, no filtering).</summary>
internal static class Png
{
    public static byte[] Rgb(byte[] pixels, int height, int width)
    {
        using var raw = new MemoryStream();
        for (int y = 0; y < height; y++)
        {
            raw.WriteByte(0); // filter: none
            raw.Write(pixels, y * width * 3, width * 3);
        }
        using var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true)) raw.WriteTo(z);
        using var png = new MemoryStream();
        png.Write([137, 80, 78, 71, 13, 10, 26, 10]);
        var header = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header, width);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8; // bit depth
        header[9] = 2; // colour type RGB
        Chunk(png, "IHDR", header);
        Chunk(png, "IDAT", compressed.ToArray());
        Chunk(png, "IEND", []);
        return png.ToArray();
    }

    private static void Chunk(Stream s, string type, byte[] data)
    {
        var length = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(length, data.Length);
        s.Write(length);
        var body = new byte[4 + data.Length];
        System.Text.Encoding.ASCII.GetBytes(type).CopyTo(body, 0);
        data.CopyTo(body, 4);
        s.Write(body);
        var crc = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32(body));
        s.Write(crc);
    }

    private static uint Crc32(byte[] data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? 0xEDB88320 ^ (crc >> 1) : crc >> 1;
        }
        return ~crc;
    }
}
