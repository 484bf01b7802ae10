using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Analysis;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Reparameterize;

/// <summary>
/// Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization") of convolution pairs:
/// where a convolution's output reaches exactly one convolution through nothing or a positively
/// homogeneous activation (ReLU, LeakyReLU: f(x/s) = f(x)/s for s &gt; 0), output channel i of the
/// first is divided by s_i (weights and bias) and the second's input channel i multiplied by s_i —
/// the same function, exactly. s_i = √(r1_i / r2_i) makes both channel ranges √(r1_i·r2_i), so
/// the per-output-channel weight grid of the second layer no longer spans channels 100× apart,
/// the typical failure of depthwise-separable blocks. Pairs chained through one convolution
/// (expand → depthwise → project) are equalized in rounds until the factors settle. Hard-swish,
/// GELU and clipped activations are not homogeneous: their depthwise inputs get per-channel
/// activation quantization instead (role <c>depthwise-input</c>). Data-free: it runs before
/// calibration, so statistics see the equalized network. A ViT's patch embedding has no pair.
/// </summary>
internal sealed class EqualizeConvPairs : IPass
{
    public const int MaxRounds = 20;

    public string Name => "equalize-convs";
    public PassContract Contract { get; } = new([Stages.Canonical], [], [Stages.Statistics, Stages.Fitted]);

    private sealed record Pair(Node First, Node Second, Node? Activation, bool SecondIsDepthwise);

    public PassResult Run(Model model, PassContext context)
    {
        var pairs = Find(model.Graph);
        if (pairs.Count == 0) return PassResult.Unchanged;
        double largest = 0;
        int rounds = 0;
        for (; rounds < MaxRounds; rounds++)
        {
            double change = pairs.Max(p => Equalize(model.Graph, p));
            if (rounds == 0) largest = change;
            if (change < 1e-3) break;
        }
        context.Info($"equalized {pairs.Count} convolution pairs ({string.Join(", ", pairs.Select(p => $"{p.First.Name} → {p.Second.Name}"))}) in {rounds + 1} rounds; largest first-round factor e^{largest:0.00}");
        return PassResult.Changed;
    }

    private static List<Pair> Find(Graph g)
    {
        var pairs = new List<Pair>();
        foreach (var first in g.Nodes.Where(n => n.OpType == "Conv" && n.Domain is "" or "ai.onnx"))
        {
            if (!OwnedWeight(first, out _) || first.Input(2) is { } b && !Owned(b)) continue;
            var output = first.Output();
            if (Single(output) is not { } next) continue;
            Node? activation = null;
            if (next.OpType is "Relu" or "LeakyRelu")
            {
                activation = next;
                next = Single(next.Output());
            }
            if (next is not { OpType: "Conv" } second || !ReferenceEquals(second.Input(0), (activation ?? first).Output())) continue;
            if (!OwnedWeight(second, out var w2)) continue;
            bool depthwise = ConvShape.IsDepthwise(second);
            if (!depthwise && second.GetInt("group", 1) != 1) continue;
            long channels = Weight(first).Dims[0];
            if ((depthwise ? w2.Dims[0] : w2.Dims[1]) != channels) continue;
            pairs.Add(new Pair(first, second, activation, depthwise));
        }
        return pairs;

        static Node? Single(Value v) => v.Consumers.Count == 1 && !v.IsGraphOutput ? v.Consumers[0].Node : null;
    }

    /// <summary>A constant 4-D (or 3-D) weight read by this node alone, so rescaling it changes nothing else.</summary>
    private static bool OwnedWeight(Node conv, out Tensor w)
    {
        w = null!;
        var v = conv.Input(1);
        if (v is null || !Owned(v) || !Constants.TryGetTensor(v, out w)) return false;
        return w.DataType == DataType.Float && w.Rank >= 3;
    }

    private static bool Owned(Value v) => v.IsInitializer && !v.IsGraphInput && v.Consumers.Count == 1 && v.Initializer!.DataType == DataType.Float;

    private static Tensor Weight(Node conv) => conv.Input(1)!.Initializer!;

    /// <summary>One equalization step of a pair; returns the largest |ln s_i| applied.</summary>
    private static double Equalize(Graph g, Pair p)
    {
        var w1 = Weight(p.First);
        var w2 = Weight(p.Second);
        var a = w1.ToFloats();
        var b = w2.ToFloats();
        int channels = (int)w1.Dims[0];
        int per1 = a.Length / channels;
        int outputs2 = (int)w2.Dims[0];
        int inPer2 = p.SecondIsDepthwise ? 1 : (int)w2.Dims[1];
        int kernel2 = (int)(w2.ElementCount / (outputs2 * (long)inPer2));

        // Per-channel ranges: the first layer's output channels (axis 0); the second's input
        // channels (axis 1, or axis 0 of a depthwise weight [C, 1, k, k]).
        var r1 = AxisLayout.MaxAbs(a, w1.Dims.ToArray(), 0);
        var r2 = AxisLayout.MaxAbs(b, w2.Dims.ToArray(), p.SecondIsDepthwise ? 0 : 1);
        var s = new float[channels];
        double largest = 0;
        for (int i = 0; i < channels; i++)
        {
            s[i] = r1[i] > 0 && r2[i] > 0 ? MathF.Sqrt(r1[i] / r2[i]) : 1f;
            largest = Math.Max(largest, Math.Abs(Math.Log(s[i])));
        }
        for (int i = 0; i < channels; i++)
            for (int k = 0; k < per1; k++) a[i * per1 + k] /= s[i];
        for (int o = 0; o < outputs2; o++)
            for (int j = 0; j < inPer2; j++)
            {
                float factor = s[p.SecondIsDepthwise ? o : j];
                for (int k = 0; k < kernel2; k++) b[(o * inPer2 + j) * kernel2 + k] *= factor;
            }
        g.SetInitializer(p.First.Input(1)!, Tensor.FromFloats(w1.Dims, a));
        g.SetInitializer(p.Second.Input(1)!, Tensor.FromFloats(w2.Dims, b));
        if (p.First.Input(2) is { } bias)
        {
            var values = bias.Initializer!.ToFloats();
            for (int i = 0; i < channels; i++) values[i] /= s[i];
            g.SetInitializer(bias, Tensor.FromFloats(bias.Initializer!.Dims, values));
        }
        return largest;
    }
}
