using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Tests.Support;

/// <summary>Fits a quantizer kind on synthetic data the way the pipeline does (the kind's own
/// observers plus the row sample, fed the data, then <see cref="IQuantizerKind.Fit"/>), and emits
/// it into a one-node graph that ONNX Runtime can run.</summary>
internal static class QuantizerHarness
{
    public static (Model Model, QuantizationSite Site) Graph(long[] shape, TensorRole role = TensorRole.Other)
    {
        var g = new Graph("q");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, shape));
        var y = g.AddNode("Identity", [x], ["y"], name: "consumer").Output();
        y.Type = x.Type;
        g.AddOutput(y);
        var model = TinyModels.NewModel(g);
        return (model, new QuantizationSite { Value = x, Uses = [new Use(y.Producer!, 0)], Role = role });
    }

    public static FittedQuantizer Fit(string kind, int bits, float[] data, long[] shape, TensorRole role = TensorRole.Other,
        Dictionary<string, string>? options = null)
    {
        var (_, site) = Graph(shape, role);
        return Fit(site with { Spec = QuantizerRegistry.Spec(kind, bits, role, options) }, data, shape);
    }

    public static FittedQuantizer Fit(QuantizationSite site, float[] data, long[] shape)
    {
        var observers = new Dictionary<(Value, string), IObserver>();
        foreach (var r in site.Spec!.KindInfo.Observers(site).Append(new ObserverRequest(ObserverKeys.Rows, () => new RowSampleObserver(4096, tensor: site.Name))))
        {
            var o = r.Create();
            o.Observe(data, shape);
            observers[(site.Value, r.Key)] = o;
        }
        return site.Spec.KindInfo.Fit(site, new FitContext(new ActivationStatistics(observers, 1)));
    }

    public static float[] Simulate(FittedQuantizer q, float[] data, long[] shape)
    {
        var copy = (float[])data.Clone();
        q.Simulate(copy, shape);
        return copy;
    }

    /// <summary>What ONNX Runtime computes for the quantizer's portable form.</summary>
    public static float[] RunPortable(FittedQuantizer q, float[] data, long[] shape, long opset = 17)
    {
        var (model, site) = Graph(shape);
        model.OpsetImports.Clear();
        model.OpsetImports.Add(new OpsetImport("", opset));
        var consumer = site.Uses[0].Node;
        var dq = q.EmitPortable(new PortableBuilder(model, consumer, "x"), site);
        consumer.SetInput(0, dq);
        OnnxViTQ.PassInfra.GraphValidator.Validate(model);
        return Ort.Run(Ort.Bytes(model), "x", data, shape)[0];
    }

    public static float[] Uniform(int n, int seed, float lo, float hi)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => lo + (hi - lo) * (float)rng.NextDouble()).ToArray();
    }

    /// <summary>Rows of softmax probabilities over random logits (power-law-ish, rows sum to 1).</summary>
    public static float[] Softmax(int rows, int width, int seed, float temperature = 2.5f)
    {
        var rng = new Random(seed);
        var result = new float[rows * width];
        for (int r = 0; r < rows; r++)
        {
            var logits = Enumerable.Range(0, width).Select(_ => (float)(rng.NextDouble() * 2 - 1) * temperature).ToArray();
            float max = logits.Max();
            double sum = logits.Sum(l => Math.Exp(l - max));
            for (int i = 0; i < width; i++) result[r * width + i] = (float)(Math.Exp(logits[i] - max) / sum);
        }
        return result;
    }

    /// <summary>GELU of normal-ish inputs: a dip to −0.17 and a long positive tail.</summary>
    public static float[] Gelu(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ =>
        {
            double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
            double x = 1.5 * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
            return (float)(0.5 * x * (1 + Erf(x / Math.Sqrt(2))));
        }).ToArray();
    }

    /// <summary>erf for test data and references (the GELU of kernel tests too).</summary>
    internal static double Erf(double x)
    {
        // Abramowitz–Stegun 7.1.26, |error| < 1.5e-7: enough for test data.
        double t = 1 / (1 + 0.3275911 * Math.Abs(x));
        double y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.Exp(-x * x);
        return x >= 0 ? y : -y;
    }
}
