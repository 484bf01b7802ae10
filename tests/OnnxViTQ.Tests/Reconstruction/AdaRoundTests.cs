using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Passes;
using OnnxViTQ.Reconstruction;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Reconstruction;

/// <summary>Modules cut out of a real export compute what they computed in the model, and AdaRound's
/// rounding lowers their output error against round-to-nearest on samples it did not see.</summary>
public class AdaRoundTests
{
    private const string Mlp = "/encoder/layers/encoder_layer_2/";

    private static (Model Model, string Path) Vit()
    {
        var path = Repo.Model("vit.opset17.onnx");
        return (OnnxModelReader.Load(path), path);
    }

    /// <summary>A value of the whole model on calibration samples [from, from + count), samples on axis 0.</summary>
    private static AdaRound.Batch Capture(Model model, string path, Value value, int from, int count)
    {
        var source = new NpyTensorSource(Repo.Calibration, null).Skip(from).Take(count);
        var data = PlanOutputs.RunValue(model, value.Name, source, 32, count, path).SelectMany(b => b).ToArray();
        var shape = ValueShapes.Probe(model, [value], path).Of(value);
        Assert.That(shape[0], Is.EqualTo(2), $"'{value.Name}' has the batch on axis 0");
        return new AdaRound.Batch(data, [count, .. shape.Skip(1)], count);
    }

    private static float[] RunModule(ModuleGraph module, AdaRound.Batch input)
    {
        using var session = new InferenceSession(OnnxModelWriter.ToBytes(module.Model), Ort.Options());
        return OrtRuntime.Run(session, [(module.Inputs[0].Name, input.Data, input.Shape)], [module.Outputs[0].Name])[0];
    }

    /// <summary>Per-output-channel symmetric grid from each output channel's largest magnitude (axis 1 of a
    /// MatMul weight [K, N], axis 0 of a Gemm's transposed one [N, K]).</summary>
    private static WeightGrid Grid(Tensor w, int axis, int bits)
    {
        var v = w.ToFloats();
        long rows = w.Dims[0], cols = w.Dims[1], n = w.Dims[axis];
        int qmax = (1 << (bits - 1)) - 1;
        var scales = new float[n];
        for (long r = 0; r < rows; r++)
            for (long c = 0; c < cols; c++)
            {
                long channel = axis == 0 ? r : c;
                scales[channel] = Math.Max(scales[channel], Math.Abs(v[r * cols + c]));
            }
        for (long c = 0; c < n; c++) scales[c] = Math.Max(scales[c], 1e-8f) / qmax;
        return new WeightGrid(scales, new int[n], axis, -qmax - 1, qmax);
    }

    private static double Sse(float[] a, float[] b) => a.Zip(b, (x, y) => (double)(x - y) * (x - y)).Sum();

    private static ModuleGraph WithWeights(ModuleGraph module, IReadOnlyDictionary<string, float[]> weights)
    {
        var copy = OnnxModelReader.Parse(OnnxModelWriter.ToBytes(module.Model));
        foreach (var (name, values) in weights)
        {
            var w = copy.Graph.Lookup(name)!;
            copy.Graph.SetInitializer(w, Tensor.FromFloats(w.Initializer!.Dims, values));
        }
        return ModuleGraph.Extract(copy, [copy.Graph.Inputs[0]], [copy.Graph.Outputs[0]], module.Model.Graph.Name);
    }

    [TestCase("mlp", Mlp + "ln_2/LayerNormalization_output_0", Mlp + "mlp/mlp.3/Add_output_0")]
    [TestCase("attention", Mlp + "ln_1/LayerNormalization_output_0", Mlp + "self_attention/Transpose_5_output_0")]
    public void AModuleComputesWhatItDidInTheModel(string kind, string input, string output)
    {
        var (model, path) = Vit();
        var g = model.Graph;
        var module = ModuleGraph.Extract(model, [g.Lookup(input)!], [g.Lookup(output)!], kind);
        Assert.That(module.Model.Graph.Nodes.Count, Is.LessThan(g.Nodes.Count / 4), "only the module's nodes");
        var x = Capture(model, path, g.Lookup(input)!, 0, 16);
        var y = Capture(model, path, g.Lookup(output)!, 0, 16);
        Assert.That(RunModule(module, x), Is.EqualTo(y.Data).Within(1e-4f));

        var e = Assert.Throws<OnnxViTQException>(() => ModuleGraph.Extract(model, [g.Lookup(output)!], [g.Lookup(input)!], "backwards"))!;
        Assert.That(e.Message, Does.StartWith("module 'backwards' needs '"));
    }

    /// <summary>3-bit per-channel weights in the third block's MLP (fc1 and fc2 together) and its attention
    /// (input and output projections): AdaRound trained on 256 calibration samples lowers the module's
    /// output error on 128 others against round-to-nearest on the same grid, and a second run with the
    /// same seed chooses the same codes.</summary>
    [TestCase("mlp", Mlp + "ln_2/LayerNormalization_output_0", Mlp + "mlp/mlp.3/Add_output_0")]
    [TestCase("attention", Mlp + "ln_1/LayerNormalization_output_0", Mlp + "self_attention/Transpose_5_output_0")]
    public void LowersTheModuleErrorAgainstNearestRounding(string kind, string input, string output)
    {
        var (model, path) = Vit();
        var g = model.Graph;
        var module = ModuleGraph.Extract(model, [g.Lookup(input)!], [g.Lookup(output)!], kind);
        var weights = module.Model.Graph.Nodes.Where(n => n.OpType is "MatMul" or "Gemm" && n.Inputs[1]!.Initializer is { Dims.Count: 2 })
            .Select(n => (W: n.Inputs[1]!, Axis: n.OpType == "Gemm" && n.GetInt("transB", 0) != 0 ? 0 : 1)).ToList();
        Assert.That(weights, Has.Count.EqualTo(2));
        var grids = weights.Select(w => (w.W.Name, Grid(w.W.Initializer!, w.Axis, 3))).ToList();

        var trainX = Capture(model, path, g.Lookup(input)!, 0, 256);
        var trainY = Capture(model, path, g.Lookup(output)!, 0, 256);
        var settings = new AdaRound.Settings { Iterations = 400, Seed = 1 };
        var result = AdaRound.Optimize(module, grids, [trainX], trainY, settings);
        TestContext.Out.WriteLine($"{kind}: training error {result.FirstLoss:G4} -> {result.LastLoss:G4} in {result.Elapsed.TotalSeconds:0.0} s");

        var heldX = Capture(model, path, g.Lookup(input)!, 256, 128);
        var heldY = Capture(model, path, g.Lookup(output)!, 256, 128);
        var nearest = WithWeights(module, grids.ToDictionary(p => p.Name, p => p.Item2.Dequantize(p.Item2.Nearest(module.Model.Graph.Lookup(p.Name)!.Initializer!.ToFloats(),
            module.Model.Graph.Lookup(p.Name)!.Initializer!.Dims.ToArray()), module.Model.Graph.Lookup(p.Name)!.Initializer!.Dims.ToArray())));
        var adaround = WithWeights(module, grids.ToDictionary(p => p.Name, p => p.Item2.Dequantize(result.Codes[p.Name], module.Model.Graph.Lookup(p.Name)!.Initializer!.Dims.ToArray())));
        double nearestError = Sse(RunModule(nearest, heldX), heldY.Data), adaroundError = Sse(RunModule(adaround, heldX), heldY.Data);
        TestContext.Out.WriteLine($"{kind}: held-out squared error nearest {nearestError:G4}, AdaRound {adaroundError:G4} ({adaroundError / nearestError:P0})");
        Assert.That(adaroundError, Is.LessThan(0.6 * nearestError), "measured: 34 % (mlp) and 30 % (attention) of nearest rounding's error");

        var again = AdaRound.Optimize(module, grids, [trainX], trainY, settings);
        Assert.That(again.Codes.Keys, Is.EquivalentTo(result.Codes.Keys));
        foreach (var key in result.Codes.Keys) Assert.That(again.Codes[key], Is.EqualTo(result.Codes[key]), $"codes of {key} on a second run");
    }
}
