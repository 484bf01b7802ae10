using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.EndToEnd;

/// <summary>
/// Weights held in Constant nodes, as paddle2onnx and tf2onnx write them
/// (<c>models/exports/vit-constant-nodes.opset13.onnx</c>: vit.opset13.onnx rewritten by
/// <c>tools/zoo/zoo.py constant-nodes</c>). Canonicalization makes them initializers, so the folds
/// that rewrite weights (repq, dopq: "weight … is not constant" before) and every other pass treat
/// them like the PyTorch export's: same plan, same predictions.
/// </summary>
public class ConstantNodeWeightsTests
{
    private static string Export => Path.Combine(Repo.Models, "exports", "vit-constant-nodes.opset13.onnx");

    [Test]
    public void TheExportHoldsItsWeightsInConstantNodes()
    {
        var model = OnnxModelReader.Load(Export);
        Assert.That(model.Graph.Initializers.Count(v => v.Initializer!.DataType == OnnxViTQ.Ir.DataType.Float), Is.Zero);
        Assert.That(model.Graph.Nodes.Count(n => n.OpType == "Constant" && n.Attribute("value")!.AsTensor().Rank >= 2), Is.GreaterThan(20));
    }

    [TestCase("minmax")]
    [TestCase("repq")]
    [TestCase("dopq")]
    [TestCase("adfq")]
    public void QuantizesToTheSamePredictionsAsThePyTorchExport(string recipe)
    {
        var eval = NpyFile.Open(Repo.EvalImages);
        int[] Predictions(string path)
        {
            var model = OnnxModelReader.Load(path);
            Quantizer.Quantize(model, path, new NpyTensorSource(Repo.Calibration, null),
                new QuantizationOptions { Recipe = recipe, Bits = BitWidths.Parse("W6A6"), CalibrationSamples = 128 });
            var saved = OnnxModelReader.Parse(OnnxModelWriter.ToBytes(model));
            Assert.That(saved.Graph.Nodes.Count(n => n.OpType == "Constant" && n.Attribute("value")!.AsTensor().Rank >= 2), Is.Zero, "weights are initializers in the output");
            return ClassificationEvaluator.Predict(saved, path, new NpyTensorSource(Repo.EvalImages, ImagePreprocessing.ForModel(saved, 3, 28, 28)));
        }
        var reference = Predictions(Repo.Model("vit.opset13.onnx"));
        var constants = Predictions(Export);
        Assert.That(eval.Shape[0], Is.EqualTo(reference.Length));
        Assert.That(ClassificationEvaluator.Agreement(reference, constants), Is.EqualTo(1.0), "the same plan on the same weights");
    }
}
