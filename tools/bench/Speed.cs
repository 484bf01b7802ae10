using System.Diagnostics;
using System.Text;
using Microsoft.ML.OnnxRuntime;
using OnnxViTQ;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Passes.Lowering;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;

/// <summary>
/// Runtime speed: the int8 VNNI peak of this machine, per-GEMM throughput of
/// com.onnxvitq.QuantizedLinear, and end-to-end latency of FP32 against every quantized form of the
/// same plan — all with 2 intra-op threads, runs interleaved round by round, medians.
/// </summary>
internal static class Speed
{
    public const int Threads = 2;

    /// <summary>Medians (ms) of <paramref name="rounds"/> interleaved runs of each candidate on the
    /// same input (<see cref="LatencyBenchmark"/>): <see cref="Threads"/> intra-op threads, ORT_ENABLE_ALL, QDQ
    /// fused as a deployment runs it, one shared pool of spinning threads (<see cref="SessionThreads.SharedPool"/>), the native ops registered.</summary>
    public static double[] MedianMs(IReadOnlyList<byte[]> models, string inputName, float[] input, long[] shape, int rounds, int warmup = 3) =>
        WithSessions(models, _ => null, sessions => LatencyBenchmark.Measure(sessions, inputName, input, shape, rounds, warmup).Select(l => l.MedianMs).ToArray());

    /// <summary>Opens one session per candidate as <see cref="MedianMs"/> describes (<paramref name="configure"/>:
    /// extra settings for candidate i, or null), gives them to <paramref name="measure"/>, disposes them.</summary>
    private static T WithSessions<T>(IReadOnlyList<byte[]> models, Func<int, Action<SessionOptions>?> configure, Func<List<InferenceSession>, T> measure)
    {
        var sessions = new List<InferenceSession>();
        try
        {
            for (int i = 0; i < models.Count; i++)
                sessions.Add(OrtRuntime.CreateSession(models[i], $"candidate {i + 1}", QdqExecution.Fused, SessionThreads.SharedPool(Threads), configure(i)));
            return measure(sessions);
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
        }
    }

    /// <summary>
    /// <see cref="MedianMs"/> with each candidate's op time beside its Run time: the median over the
    /// timed runs of the summed durations of the run's nodes (ONNX Runtime's profiler, which times each
    /// kernel's Compute, µs resolution). The difference is what a Run costs around the ops (feeding the
    /// input, allocating and returning the output, the executor's dispatch), which a model's ops share
    /// and a single-op model pays in full.
    /// </summary>
    public static (double RunMs, double OpMs)[] MedianRunAndOpMs(IReadOnlyList<byte[]> models, string inputName, float[] input, long[] shape, int rounds, int warmup = 3)
    {
        var directory = Directory.CreateTempSubdirectory("onnxvitq-profile");
        try
        {
            // The prefix first: setting EnableProfiling starts the profiler with the prefix it has then.
            return WithSessions(models, i => o => { o.ProfileOutputPathPrefix = Path.Combine(directory.FullName, $"candidate{i}"); o.EnableProfiling = true; }, sessions =>
            {
                var runs = LatencyBenchmark.Measure(sessions, inputName, input, shape, rounds, warmup);
                return sessions.Select((s, i) =>
                {
                    var ops = ProfiledOpMs(s.EndProfiling());
                    if (ops.Count != warmup + rounds) throw new OnnxViTQException($"the profile of candidate {i + 1} holds {ops.Count} runs, not the {warmup + rounds} made");
                    return (runs[i].MedianMs, LatencyBenchmark.Quantile(ops.Skip(warmup), 0.5));
                }).ToArray();
            });
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    /// <summary>Per run in a profile (each "model_run" event, in order): the summed durations of the
    /// node events ("…_kernel_time") that start inside it, in ms.</summary>
    public static List<double> ProfiledOpMs(string profilePath)
    {
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(profilePath));
        var runs = new List<(long Start, long End)>();
        var nodes = new List<(long Start, long Duration)>();
        foreach (var e in json.RootElement.EnumerateArray())
        {
            string name = e.GetProperty("name").GetString() ?? "";
            long ts = e.GetProperty("ts").GetInt64(), dur = e.GetProperty("dur").GetInt64();
            if (name == "model_run") runs.Add((ts, ts + dur));
            else if (e.GetProperty("cat").GetString() == "Node" && name.EndsWith("_kernel_time", StringComparison.Ordinal)) nodes.Add((ts, dur));
        }
        if (runs.Count == 0 || nodes.Count == 0) throw new OnnxViTQException($"the profile '{profilePath}' has no runs or no node timings");
        return runs.Select(r => nodes.Where(n => n.Start >= r.Start && n.Start <= r.End).Sum(n => n.Duration) / 1e3).ToList();
    }

    /// <summary>Register-only VNNI peak: per core, and all cores at once (one thread each).</summary>
    public static (double PerCore, double AllCores) VnniPeak() => Peak(() => NativeOps.VnniPeakGops(0.5));

    /// <summary>Register-only AVX2 peak of one instruction kind (<see cref="NativeOps.Avx2PeakGops"/>).</summary>
    public static (double PerCore, double AllCores) Avx2Peak(int kind) => Peak(() => NativeOps.Avx2PeakGops(0.5, kind));

    // A peak is what the core can do, so each figure is the best of several tries: one 0.5 s try
    // on a shared machine once read 133 GOPS on two cores against 112 on one, below the GEMM it
    // was meant to bound.
    public const int PeakTries = 5;

    private static (double PerCore, double AllCores) Peak(Func<double> measure)
    {
        double single = 0, all = 0;
        for (int attempt = 0; attempt < PeakTries; attempt++)
        {
            single = Math.Max(single, measure());
            var results = new double[Threads];
            var threads = Enumerable.Range(0, Threads).Select(i => new Thread(() => results[i] = measure())).ToList();
            foreach (var t in threads) t.Start();
            foreach (var t in threads) t.Join();
            all = Math.Max(all, results.Sum());
        }
        return (single, all);
    }

    /// <summary>y[M,N] = QuantizedLinear(x[M,K]) with random codes; per-token activations.
    /// <paramref name="gelu"/>: <c>none</c>; <c>separate</c> = the exporter's erf GELU nodes after the op
    /// (ONNX Runtime fuses them into its Gelu op), as an unfused native model has them; <c>fused</c> =
    /// the op's GELU epilogue (fuse-native-gelu). <paramref name="layerNorm"/> likewise: a
    /// LayerNormalization before the op, or the op's own layernorm inputs (fuse-native-layernorm).</summary>
    public static byte[] GemmModel(int m, int k, int n, int weightBits, string gelu = "none", string layerNorm = "none")
    {
        var g = new Graph("gemm");
        var x = g.AddInput("x", new TensorTypeInfo(DataType.Float, [Dim.Known(m), Dim.Known(k)]));
        var rng = new Random(1);
        int lo = -(1 << (weightBits - 1)), hi = 1 << (weightBits - 1);
        var codes = Enumerable.Range(0, k * n).Select(_ => rng.Next(lo, hi)).ToArray();
        var packed = g.AddInitializer("w", Tensor.From<byte>(DataType.UInt8, [NativeWeightLayout.Bytes(k, n, weightBits)], NativeWeightLayout.Pack((a, b) => codes[a * n + b], k, n, weightBits)));
        var s = g.AddInitializer("s", Tensor.FromFloats([n], Enumerable.Repeat(0.01f, n).ToArray()));
        var b = g.AddInitializer("b", Tensor.FromFloats([n], new float[n]));
        var activation = NativeLinearLowering.ActivationAttributes(new TokenGridForm(8, 0), out _)!;
        var op = NativeOpSchemas.QuantizedLinear;
        var gamma = g.AddInitializer("gamma", Tensor.FromFloats([k], Enumerable.Range(0, k).Select(_ => 0.5f + (float)rng.NextDouble()).ToArray()));
        var beta = g.AddInitializer("beta", Tensor.FromFloats([k], Enumerable.Range(0, k).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray()));
        Value input = layerNorm == "separate" ? g.AddNode("LayerNormalization", [x, gamma, beta], ["normalised"], [AttributeValue.Float("epsilon", 1e-6f)]).Output() : x;
        var y = op.Node(g, [input, packed, s, b, .. layerNorm == "fused" ? new[] { gamma, beta } : []], "y",
            [op.Int("k", k), op.Int("n", n), op.Int("weight_bits", weightBits), .. activation,
             .. gelu == "fused" ? [op.String("epilogue", "gelu")] : Array.Empty<AttributeValue>(),
             .. layerNorm == "fused" ? [op.Float("layernorm_epsilon", 1e-6f)] : Array.Empty<AttributeValue>()], "gemm").Output();
        if (gelu == "separate")
        {
            Value Scalar(string name, float v) => g.AddInitializer(name, Tensor.FromFloats([], [v]));
            var erf = g.AddNode("Erf", [g.AddNode("Div", [y, Scalar("sqrt2", MathF.Sqrt(2))], ["scaled"]).Output()], ["erf"]).Output();
            var gate = g.AddNode("Add", [erf, Scalar("one", 1)], ["gate"]).Output();
            y = g.AddNode("Mul", [g.AddNode("Mul", [y, gate], ["gated"]).Output(), Scalar("half", 0.5f)], ["gelu"]).Output();
        }
        g.AddOutput(y);
        return OnnxModelWriter.ToBytes(new Model(g, 8, [new OpsetImport("", 17), new OpsetImport(NativeOps.Domain, 1)]));
    }

    /// <summary>The same GEMM in FP32 (MatMul + Add), for the side-by-side ratio.</summary>
    public static byte[] FloatGemmModel(int m, int k, int n)
    {
        var g = new Graph("gemm");
        var x = g.AddInput("x", new TensorTypeInfo(DataType.Float, [Dim.Known(m), Dim.Known(k)]));
        var rng = new Random(1);
        var w = g.AddInitializer("w", Tensor.FromFloats([k, n], Enumerable.Range(0, k * n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray()));
        var b = g.AddInitializer("b", Tensor.FromFloats([n], new float[n]));
        var y = g.AddNode("Add", [g.AddNode("MatMul", [x, w], ["xw"]).Output(), b], ["y"]).Output();
        g.AddOutput(y);
        return OnnxModelWriter.ToBytes(new Model(g, 8, [new OpsetImport("", 17)]));
    }

    /// <summary>An attention product y[S,M,N] = x[S,M,K]·b[S,K,N] (b a constant) in one of three
    /// forms: <c>native</c> = com.onnxvitq.QuantizedMatMul, <c>qdq</c> = QuantizeLinear/DequantizeLinear
    /// on both operands then MatMul (the portable form, as ONNX Runtime fuses it), <c>float</c> = MatMul.
    /// Both operands are 8-bit asymmetric over [−2, 2].</summary>
    public static byte[] ProductModel(int slices, int m, int k, int n, string form)
    {
        var g = new Graph("product");
        var x = g.AddInput("x", new TensorTypeInfo(DataType.Float, [Dim.Known(slices), Dim.Known(m), Dim.Known(k)]));
        var rng = new Random(2);
        Value b = g.AddInitializer("b", Tensor.FromFloats([slices, k, n], Enumerable.Range(0, slices * k * n).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray()));
        var q = IntegerGrids.AsymmetricFromRange(-2f, 2f, 8);
        var grid = q.Grid();
        Value y;
        switch (form)
        {
            case "native":
                y = NativeOpSchemas.QuantizedMatMul.Node(g, [x, b], "y",
                    [.. LowerActivationProducts.OperandAttributes("a", q), .. LowerActivationProducts.OperandAttributes("b", q)], "product").Output();
                break;
            case "qdq":
                var scale = g.AddInitializer("scale", Tensor.FromFloats([], [grid.Scales[0]]));
                var zero = g.AddInitializer("zero", Tensor.From<byte>(DataType.UInt8, [], [(byte)grid.ZeroPoints[0]]));
                Value Qdq(Value v, string name) => g.AddNode("DequantizeLinear", [g.AddNode("QuantizeLinear", [v, scale, zero], [$"{name}_q"]).Output(), scale, zero], [$"{name}_dq"]).Output();
                y = g.AddNode("MatMul", [Qdq(x, "x"), Qdq(b, "b")], ["y"]).Output();
                break;
            default:
                y = g.AddNode("MatMul", [x, b], ["y"]).Output();
                break;
        }
        g.AddOutput(y);
        return OnnxModelWriter.ToBytes(new Model(g, 8, [new OpsetImport("", 17), new OpsetImport(NativeOps.Domain, 1)]));
    }

    public static float[] RandomInput(long count, int seed)
    {
        var rng = new Random(seed);
        var x = new float[count];
        for (long i = 0; i < count; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
        return x;
    }
}
