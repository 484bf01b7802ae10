using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Ir;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;

namespace OnnxViTQ.Reconstruction;

/// <summary>A weight's integer grid: per-channel (or one) scale and zero point along <see cref="Axis"/>, codes in [QMin, QMax].</summary>
internal sealed record WeightGrid(float[] Scales, int[] ZeroPoints, int? Axis, int QMin, int QMax)
{
    /// <summary>Scale and zero point of element <paramref name="index"/> of a tensor shaped <paramref name="shape"/>.</summary>
    public (float Scale, int Zero) At(long index, long[] shape)
    {
        if (Axis is not { } axis) return (Scales[0], ZeroPoints[0]);
        long inner = 1;
        for (int d = axis + 1; d < shape.Length; d++) inner *= shape[d];
        int c = (int)(index / inner % shape[axis]);
        return (Scales[c], ZeroPoints[c]);
    }

    /// <summary>Round-to-nearest codes of <paramref name="w"/> (what the plan emits without AdaRound).</summary>
    public int[] Nearest(float[] w, long[] shape) => w.Select((v, i) => { var (s, z) = At(i, shape); return Math.Clamp((int)MathF.Round(v / s, MidpointRounding.ToEven) + z, QMin, QMax); }).ToArray();

    /// <summary>The values codes stand for, s·(q − z).</summary>
    public float[] Dequantize(int[] codes, long[] shape) => codes.Select((q, i) => { var (s, z) = At(i, shape); return s * (q - z); }).ToArray();
}

/// <summary>An activation quantized on a uniform grid where some nodes of a module read it (by name:
/// <c>Reads</c> are (node, input index) pairs), simulated during the optimization with straight-through rounding.</summary>
internal sealed record ActivationGrid(string Value, IReadOnlyList<(string Node, int Input)> Reads, float Scale, int ZeroPoint, int QMin, int QMax);

/// <summary>
/// AdaRound (Nagel et al., 2020) for the weights of one module, as BRECQ applies it to a block:
/// each weight element rounds down or up, chosen by a learned V through the rectified sigmoid
/// h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1), ζ = 1.1, γ = −0.1; the module's output with the soft weights
/// s·(clip(⌊w/s⌋ + z + h(V), qmin, qmax) − z) is matched to the FP32 module's output on captured
/// inputs (squared error summed over features, averaged over rows), plus λ Σ (1 − |2h(V) − 1|^β)
/// with β annealed from 20 to 2 after a warm-up without it, which drives h to 0 or 1. The forward
/// and the error's gradient run in ONNX Runtime (the module's graph and <see cref="GradientBuilder"/>'s
/// backward in one session); the regularizer's gradient and Adam run here. Deterministic for a
/// seed: batches are drawn by it, and ONNX Runtime runs with one thread.
/// </summary>
internal static class AdaRound
{
    private const float Zeta = 1.1f, Gamma = -0.1f;

    public sealed record Settings
    {
        public int Iterations { get; init; } = 1000;
        /// <summary>Samples (images) per step.</summary>
        public int BatchSamples { get; init; } = 32;
        public float LearningRate { get; init; } = 3e-3f;
        public float Lambda { get; init; } = 0.01f;
        public float BetaStart { get; init; } = 20f;
        public float BetaEnd { get; init; } = 2f;
        /// <summary>Share of the iterations before the rounding regularizer starts.</summary>
        public float Warmup { get; init; } = 0.2f;
        public int Seed { get; init; }
    }

    /// <summary>The codes chosen per weight, and the reconstruction error (without the regularizer) at the first and last step.</summary>
    public sealed record Result(IReadOnlyDictionary<string, int[]> Codes, double FirstLoss, double LastLoss, TimeSpan Elapsed);

    /// <summary>One captured tensor for the module: <paramref name="Samples"/> samples along axis 0 of
    /// <paramref name="Shape"/>, each an equal run of rows there (one image, or Swin's windows of one image).</summary>
    public sealed record Batch(float[] Data, long[] Shape, int Samples)
    {
        public long RowsPerSample => Shape[0] / Samples;

        public (float[] Data, long[] Shape) Pick(int[] samples)
        {
            int per = (int)(Data.Length / Samples);
            var data = new float[samples.Length * per];
            for (int i = 0; i < samples.Length; i++) Array.Copy(Data, (long)samples[i] * per, data, (long)i * per, per);
            return (data, [samples.Length * RowsPerSample, .. Shape.Skip(1)]);
        }
    }

    /// <summary>Optimizes the rounding of <paramref name="weights"/> (initializers of <paramref name="module"/>, by name, with their grids).
    /// <paramref name="inputs"/>: per module input, all samples (axis 0); <paramref name="target"/>: the FP32 module's output on them.</summary>
    public static Result Optimize(ModuleGraph module, IReadOnlyList<(string Weight, WeightGrid Grid)> weights, IReadOnlyList<Batch> inputs, Batch target,
        Settings settings, IProgress<(int Step, double Error)>? progress = null, IReadOnlyList<ActivationGrid>? activations = null)
    {
        var clock = Stopwatch.StartNew();
        var model = OnnxModelReader.Parse(OnnxModelWriter.ToBytes(module.Model), sourceName: module.Model.Graph.Name);
        var g = model.Graph;
        var soft = new List<SoftWeight>();
        foreach (var (name, grid) in weights)
        {
            var w = g.Lookup(name) is { Initializer: { } t } v ? (v, t) : throw new OnnxViTQException($"module '{g.Name}' has no weight '{name}'");
            soft.Add(SoftWeight.Build(g, w.v, w.t, grid));
        }
        foreach (var a in activations ?? []) FakeQuantize(g, a);
        var output = g.Outputs[0];
        var tgt = g.AddInput("adaround_target", output.Type);
        var diff = g.AddNode("Sub", [output, tgt], ["adaround_diff"]).Output();
        var squared = g.AddNode("ReduceSum", [g.AddNode("Mul", [diff, diff], ["adaround_sq"]).Output()], ["adaround_sse"], [AttributeValue.Int("keepdims", 0)]).Output();
        var rows = g.AddInput("adaround_rows", TensorTypeInfo.Of(DataType.Float));
        var loss = g.AddNode("Div", [squared, rows], ["adaround_loss"]).Output();
        foreach (var o in g.Outputs.ToList()) g.RemoveOutput(o);
        g.AddOutput(loss);

        int samples = inputs[0].Samples;
        int batch = Math.Min(settings.BatchSamples, samples);
        var names = module.Inputs.Select(i => i.Name).ToList();
        var probeFeeds = Feeds(names, inputs, target, Enumerable.Range(0, batch).ToArray(), soft);
        var grads = GradientBuilder.Build(g, loss, soft.Select(s => s.V).ToList(), values => ValueShapes.Run(model, values, probeFeeds, g.Name));
        using var session = OrtRuntime.CreateSession(OnnxModelWriter.ToBytes(model, grads), g.Name, threads: new SessionThreads(1, Spinning: false));
        string[] fetch = [loss.Name, .. grads.Select(v => v.Name)];

        var adam = soft.Select(s => (M: new float[s.V0.Length], S: new float[s.V0.Length])).ToList();
        var rng = new Random(settings.Seed);
        double first = double.NaN, last = double.NaN;
        int warm = (int)(settings.Warmup * settings.Iterations);
        for (int step = 0; step < settings.Iterations; step++)
        {
            var pick = Enumerable.Range(0, batch).Select(_ => rng.Next(samples)).ToArray();
            var results = OrtRuntime.Run(session, Feeds(names, inputs, target, pick, soft), fetch);
            double error = results[0][0];
            if (step == 0) first = error;
            last = error;
            bool regularized = step >= warm;
            float beta = settings.BetaEnd + (settings.BetaStart - settings.BetaEnd) * (1 - (float)(step - warm) / Math.Max(1, settings.Iterations - warm));
            for (int k = 0; k < soft.Count; k++)
            {
                var v = soft[k].Value;
                var grad = results[k + 1];
                if (regularized) soft[k].AddRegularizerGradient(grad, settings.Lambda, beta);
                var (m, s) = adam[k];
                float b1t = 1 - MathF.Pow(0.9f, step + 1), b2t = 1 - MathF.Pow(0.999f, step + 1);
                for (int i = 0; i < v.Length; i++)
                {
                    m[i] = 0.9f * m[i] + 0.1f * grad[i];
                    s[i] = 0.999f * s[i] + 0.001f * grad[i] * grad[i];
                    v[i] -= settings.LearningRate * (m[i] / b1t) / (MathF.Sqrt(s[i] / b2t) + 1e-8f);
                }
            }
            if (progress is not null && (step + 1) % Math.Max(1, settings.Iterations / 20) == 0) progress.Report((step + 1, error));
        }
        return new Result(soft.ToDictionary(s => s.Name, s => s.HardCodes()), first, last, clock.Elapsed);
    }

    /// <summary>x̂ = s·(clip(round(x/s) + z, qmin, qmax) − z) before the reads of <paramref name="a"/> (Round's gradient goes straight through).</summary>
    private static void FakeQuantize(Graph g, ActivationGrid a)
    {
        if (g.Lookup(a.Value) is not { } x) return;
        var reads = a.Reads.Select(r => (Node: g.Nodes.FirstOrDefault(n => n.Name == r.Node), r.Input)).Where(r => r.Node is not null && r.Node.Input(r.Input) == x).ToList();
        if (reads.Count == 0) return;
        Value S(float v) => g.AddInitializer(g.UniqueName("adaround_act_c"), Tensor.Scalar(v));
        Value N(string op, params Value[] inputs) => g.AddNode(op, inputs, [$"adaround_act_{op}"]).Output();
        var codes = N("Clip", N("Add", N("Round", N("Div", x, S(a.Scale))), S(a.ZeroPoint)), S(a.QMin), S(a.QMax));
        var dequantized = N("Mul", N("Sub", codes, S(a.ZeroPoint)), S(a.Scale));
        foreach (var (node, input) in reads) node!.SetInput(input, dequantized);
    }

    private static List<(string Name, float[] Data, long[] Shape)> Feeds(IReadOnlyList<string> names, IReadOnlyList<Batch> inputs, Batch target, int[] pick, List<SoftWeight> soft)
    {
        var feeds = new List<(string, float[], long[])>();
        feeds.AddRange(inputs.Select((b, i) => { var (data, shape) = b.Pick(pick); return (names[i], data, shape); }));
        var (t, tShape) = target.Pick(pick);
        feeds.Add(("adaround_target", t, tShape));
        // Rows: every position but the feature axis (tokens of each sample).
        feeds.Add(("adaround_rows", [tShape.SkipLast(1).Aggregate(1L, (a, d) => a * d)], []));
        feeds.AddRange(soft.Select(s => (s.V.Name, s.Value, s.Shape)));
        return feeds;
    }

    /// <summary>One weight as the graph sees it during the optimization: ⌊w/s⌋ + z fixed, V a graph input.</summary>
    private sealed class SoftWeight
    {
        public required string Name { get; init; }
        public required Value V { get; init; }
        public required float[] Value { get; init; }
        public required float[] V0 { get; init; }
        public required long[] Shape { get; init; }
        public required int[] Base { get; init; }
        public required WeightGrid Grid { get; init; }

        public static SoftWeight Build(Graph g, Value weight, Tensor tensor, WeightGrid grid)
        {
            var w = tensor.ToFloats();
            long[] shape = tensor.Dims.ToArray();
            var floor = new int[w.Length];
            var v0 = new float[w.Length];
            var scales = new float[w.Length];
            var zeros = new float[w.Length];
            for (int i = 0; i < w.Length; i++)
            {
                var (s, z) = grid.At(i, shape);
                float x = w[i] / s;
                floor[i] = (int)MathF.Floor(x) + z;
                // h(V0) = the fractional part: the soft weight starts at the FP32 weight (inside the grid).
                float rest = Math.Clamp(x - MathF.Floor(x), 1e-4f, 1 - 1e-4f);
                v0[i] = -MathF.Log((Zeta - Gamma) / (rest - Gamma) - 1);
                scales[i] = s;
                zeros[i] = z;
            }
            var v = g.AddInput(g.UniqueName($"{weight.Name}_adaround_v"), TensorTypeInfo.Of(DataType.Float, shape));
            Value C(string hint, float[] values) => g.AddInitializer(g.UniqueName(hint), Tensor.FromFloats(shape, values));
            Value S(float x) => g.AddInitializer(g.UniqueName("adaround_c"), Tensor.Scalar(x));
            Value N(string op, params Value[] inputs) => g.AddNode(op, inputs, [$"adaround_{op}"]).Output();
            var h = N("Clip", N("Add", N("Mul", N("Sigmoid", v), S(Zeta - Gamma)), S(Gamma)), S(0f), S(1f));
            var codes = N("Clip", N("Add", C("adaround_base", floor.Select(f => (float)f).ToArray()), h), S(grid.QMin), S(grid.QMax));
            var soft = N("Mul", N("Sub", codes, C("adaround_zero", zeros)), C("adaround_scale", scales));
            foreach (var use in weight.Consumers.ToList()) use.Node.SetInput(use.InputIndex, soft);
            return new SoftWeight { Name = weight.Name, V = v, Value = (float[])v0.Clone(), V0 = v0, Shape = shape, Base = floor, Grid = grid };
        }

        private static float H(float v) => Math.Clamp(1 / (1 + MathF.Exp(-v)) * (Zeta - Gamma) + Gamma, 0, 1);

        /// <summary>λ·d/dV Σ (1 − |2h − 1|^β), added into <paramref name="grad"/>.</summary>
        public void AddRegularizerGradient(float[] grad, float lambda, float beta)
        {
            for (int i = 0; i < Value.Length; i++)
            {
                float sig = 1 / (1 + MathF.Exp(-Value[i]));
                float pre = sig * (Zeta - Gamma) + Gamma;
                if (pre <= 0 || pre >= 1) continue;  // clipped: h does not move with V
                float t = 2 * pre - 1;
                float dh = (Zeta - Gamma) * sig * (1 - sig);
                grad[i] += lambda * -beta * MathF.Pow(MathF.Abs(t), beta - 1) * MathF.Sign(t) * 2 * dh;
            }
        }

        public int[] HardCodes() => Base.Select((b, i) => Math.Clamp(b + (H(Value[i]) >= 0.5f ? 1 : 0), Grid.QMin, Grid.QMax)).ToArray();
    }
}
