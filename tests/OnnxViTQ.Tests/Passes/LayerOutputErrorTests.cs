using OnnxViTQ.Data;
using OnnxViTQ.Observers;
using OnnxViTQ.Passes;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Passes;

/// <summary>Each linear layer's output error (reports' per-layer table) against a plain
/// triple-loop reference on the same calibration rows, for a MatMul (W as [K,N]) and a Gemm
/// with transB = 1 (W as [N,K]).</summary>
public class LayerOutputErrorTests
{
    [Test]
    public void MatchesAReferenceProductForMatMulAndTransposedGemm()
    {
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var options = new QuantizationOptions { Bits = BitWidths.Parse("W4A4"), CalibrationSamples = 16, MeasureLayerOutputs = true };
        var result = Quantizer.Quantize(model, "vit", new NpyTensorSource(Repo.Calibration, null), options);
        Assert.That(result.LayerErrors, Has.Count.EqualTo(25), "every MatMul/Gemm with a weight");

        var matmul = result.LayerErrors.First(l => l.Node.EndsWith("mlp.0/MatMul", StringComparison.Ordinal));
        var gemm = result.LayerErrors.First(l => l.Node.EndsWith("self_attention/Gemm", StringComparison.Ordinal));
        foreach (var (layer, transposed) in new[] { (matmul, false), (gemm, true) })
        {
            var activation = result.Plan.Sites.Single(s => s.Name == layer.Activation);
            var weight = result.Plan.Sites.Single(s => s.Name == layer.Weight);
            var rows = result.Statistics!.Get<RowSampleObserver>(activation.Value, ObserverKeys.Rows);
            var w = WeightTensor.Read(weight);
            float[] x = rows.Copy(), xq = rows.Copy(), wq = (float[])w.Values.Clone();
            activation.Parameters!.Simulate(xq, rows.Shape);
            weight.Parameters!.Simulate(wq, w.Shape);
            int k = rows.Width, n = (int)(transposed ? w.Shape[0] : w.Shape[1]);
            float W(float[] m, int i, int j) => transposed ? m[j * k + i] : m[i * n + j];
            double signal = 0, noise = 0;
            for (int r = 0; r < rows.Count; r++)
                for (int j = 0; j < n; j++)
                {
                    double y = 0, yq = 0;
                    for (int i = 0; i < k; i++)
                    {
                        y += x[r * k + i] * W(w.Values, i, j);
                        yq += xq[r * k + i] * W(wq, i, j);
                    }
                    signal += y * y;
                    noise += (y - yq) * (y - yq);
                }
            double expected = 10 * Math.Log10(signal / noise);
            Assert.That(layer.Error.SqnrDb, Is.EqualTo(expected).Within(0.01), layer.Node);
            Assert.That(layer.Error.SqnrDb, Is.LessThan(activation.Error!.SqnrDb + 3), "4-bit errors show at the output");
        }
    }

    [Test]
    public void OnlyRunsWhenAReportAsks()
    {
        var model = OnnxModelReader.Load(Repo.Model("vit.opset17.onnx"));
        var result = Quantizer.Quantize(model, "vit", new NpyTensorSource(Repo.Calibration, null), new QuantizationOptions { CalibrationSamples = 8 });
        Assert.That(result.LayerErrors, Is.Empty);
    }
}
