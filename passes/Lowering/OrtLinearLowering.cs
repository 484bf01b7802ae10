using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>
/// <c>--format ort</c>: each linear layer in the form a stock ONNX Runtime runs fastest on this
/// machine. Candidates (<see cref="OrtContribLowering"/>): the portable QDQ (left to ONNX
/// Runtime's QDQ fusion), MatMulIntegerToFloat on the activation's own codes (uniform per-tensor
/// activations) or the weights stored dequantized in float (other activation kinds) — these
/// compute the plan exactly, and so does QDQ on integer codes (on a float fake-quant activation
/// ONNX Runtime turns QDQ into MatMulNBits) — and MatMulNBits and DynamicQuantizeMatMul, which
/// re-quantize the activation.
/// Chosen by measurement: the layer alone (its activation quantizer, weights and bias, the rows one
/// image feeds it) is built in every form with the emitters the model gets, run by ONNX Runtime
/// with this machine's threads, and the medians compared (shapes seen before reuse the choice).
/// By default the fastest exact form wins (measured: the re-quantizing forms agree with the
/// portable model on only 99.2–99.4 % of top-1 predictions); <c>anyForm</c> lets the fastest of
/// all win. Another form must beat QDQ by <see cref="Margin"/>, so timing noise does not trade
/// the most portable form away. A fixed <c>kernel</c> skips the measurement. On a CPU whose u8×s8
/// kernels saturate, the exact forms are exact because store-weights-unsigned, which runs after
/// the emitter, gives their weights uint8 storage (u8×u8 kernels); the layer models are timed in
/// that storage.
/// </summary>
internal sealed class OrtLinearLowering(OrtContribKernel? kernel = null, bool anyForm = false) : ILinearLowering
{
    /// <summary>How much faster (fraction of the QDQ time) another form must be to be chosen.</summary>
    public const double Margin = 0.03;

    private const int Warmup = 5, Rounds = 25;
    private readonly Dictionary<string, (OrtContribKernel Kernel, string Timing)> _choices = [];

    public string Name => "ort";
    public IReadOnlyList<OpsetImport> Opsets { get; } = [new(OrtContribLowering.Domain, 1)];

    /// <summary>The form each layer gets, chosen (measured) when the layer is first looked at.</summary>
    private readonly Dictionary<Node, (OrtContribKernel Kernel, string Timing)> _forms = [];

    public string? Declines(LinearLayer layer, Model model)
    {
        var (chosen, timing) = _forms[layer.Node] = kernel is { } fixedKernel ? (fixedKernel, "as asked") : Choose(layer, model);
        if (chosen == OrtContribKernel.Qdq)
            return HasIntegerCodes(layer)
                ? $"QDQ, which ONNX Runtime fuses into its integer MatMul ({timing})"
                : $"QDQ, which ONNX Runtime turns into MatMulNBits re-quantizing the activation ({timing})";
        return new OrtContribLowering(chosen).Declines(layer, model) is { } why ? $"{why}; QDQ kept" : null;
    }

    public LoweredLayer Emit(LinearLayer layer, Rewriter r, out string detail)
    {
        var (chosen, timing) = _forms[layer.Node];
        var lowered = new OrtContribLowering(chosen).Emit(layer, r, out string what);
        detail = $"{what} ({timing})";
        return lowered;
    }

    private (OrtContribKernel, string) Choose(LinearLayer layer, Model model)
    {
        int rows = RowsPerImage(layer.Input, model);
        string key = $"{layer.Node.OpType}|{layer.K}|{layer.N}|{rows}|{layer.WeightTransposed}|{layer.Bias is null}|{layer.WeightQuantizer.Bits}|{layer.Activation.Parameters?.Kind}|{layer.Activation.Parameters?.Bits}";
        if (_choices.TryGetValue(key, out var known)) return known;
        bool integerCodes = HasIntegerCodes(layer);
        var candidates = new List<OrtContribKernel> { OrtContribKernel.Qdq };
        if (integerCodes) candidates.Add(OrtContribKernel.MatMulIntegerToFloat);
        else candidates.Add(OrtContribKernel.FloatWeights);
        candidates.AddRange([OrtContribKernel.MatMulNBits, OrtContribKernel.DynamicQuantizeMatMul]);
        var medians = Time(candidates.Select(c => LayerModel(layer, model, rows, c)).ToArray(), rows, layer.K);
        // QDQ is preferred (by the margin) when it is exact; otherwise the fastest allowed form wins.
        int best = -1;
        for (int i = 0; i < candidates.Count; i++)
        {
            if (!anyForm && !IsExact(candidates[i], integerCodes)) continue;
            double bar = best < 0 ? double.PositiveInfinity : medians[best] * (best == 0 ? 1 - Margin : 1);
            if (medians[i] < bar) best = i;
        }
        string timing = $"measured on {rows}×{layer.K}·{layer.K}×{layer.N}: " +
                        string.Join(", ", candidates.Select((c, i) => $"{Label(c)} {medians[i] * 1e3:0.###} ms"));
        return _choices[key] = (candidates[best], timing);
    }

    /// <summary>The activation reaches the layer as integer codes in the portable form (uniform
    /// per tensor: QuantizeLinear/DequantizeLinear), which ONNX Runtime fuses into its integer
    /// MatMul; other quantizers are float subgraphs.</summary>
    public static bool HasIntegerCodes(LinearLayer layer) => layer.Activation.Parameters is IIntegerGrid { Axis: null };

    /// <summary>Forms that compute the plan's arithmetic (up to float summation order) as ONNX
    /// Runtime runs them: QDQ only on integer codes (on a float activation ONNX Runtime makes the
    /// DequantizeLinear → MatMul a MatMulNBits, which re-quantizes it).</summary>
    public static bool IsExact(OrtContribKernel k, bool integerCodes) => k switch
    {
        OrtContribKernel.Qdq => integerCodes,
        OrtContribKernel.MatMulIntegerToFloat or OrtContribKernel.FloatWeights => true,
        _ => false,
    };

    public static string Label(OrtContribKernel k) => k switch
    {
        OrtContribKernel.Qdq => "QDQ",
        OrtContribKernel.FloatWeights => "float weights",
        _ => k.ToString(),
    };

    /// <summary>Rows one image feeds the layer (tokens; Swin: windows × tokens), from the shapes
    /// ONNX Runtime computes for the model's linear inputs (probed once, before anything is lowered).</summary>
    private int RowsPerImage(Value input, Model model)
    {
        if (_shapes is null)
        {
            var inputs = model.Graph.Nodes.Where(n => n.OpType is "MatMul" or "Gemm" && n.Input(0) is not null).Select(n => n.Input(0)!);
            _shapes = Runtime.ValueShapes.Probe(model, inputs, "the model");
            _probeBatch = Runtime.ImageInput.Of(model, "the model").FixedBatch ?? 2;
        }
        if (!_shapes.TryGet(input, out var shape) || shape.Length < 2) return 1;
        long rows = shape[..^1].Aggregate(1L, (a, b) => a * b) / _probeBatch;
        return (int)Math.Max(1, rows);
    }

    private Runtime.ValueShapes? _shapes;
    private int _probeBatch = 1;

    /// <summary>The layer alone, [rows, K] → [rows, N], with its activation and weight quantizers
    /// emitted in the <paramref name="form"/> the model would get.</summary>
    internal static byte[] LayerModel(LinearLayer layer, Model model, int rows, OrtContribKernel form)
    {
        var g = new Graph("layer");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, rows, layer.K));
        Constants.TryGetTensor(layer.Node.Input(1)!, out var weight);
        var w = g.AddInitializer("w", weight);
        Value? bias = layer.Bias is { } b ? g.AddInitializer("b", Tensor.FromFloats([b.Length], b)) : null;
        Node matmul;
        Value y;
        if (layer.Node.OpType == "Gemm")
        {
            matmul = g.AddNode("Gemm", [x, w, bias], ["y"], [AttributeValue.Int("transB", layer.WeightTransposed ? 1 : 0)], name: "linear");
            y = matmul.Output();
        }
        else
        {
            matmul = g.AddNode("MatMul", [x, w], [bias is null ? "y" : "mm"], name: "linear");
            y = bias is null ? matmul.Output() : g.AddNode("Add", [matmul.Output(), bias], ["y"]).Output();
        }
        y.Type = TensorTypeInfo.Of(DataType.Float, rows, layer.N);
        g.AddOutput(y);
        var micro = new Model(g, model.IrVersion, [new OpsetImport("", Math.Max(13, model.DefaultOpset))]);
        var plan = new QuantizationPlan();
        plan.Add(layer.Activation with { Value = x, Uses = [new Use(matmul, 0)] });
        plan.Add(layer.Weight with { Value = w, Uses = [new Use(matmul, 1)] });
        var context = new PassContext();
        context.Set(plan);
        if (form != OrtContribKernel.Qdq) LowerLinearLayers.Pass(new OrtContribLowering(form)).Run(micro, context);
        new EmitPortable().Run(micro, context);
        // As the model's own pipeline does after emission (--format ort), so the timings are of
        // the weights' final storage.
        new StoreWeightsUnsigned().Run(micro, context);
        return OnnxModelWriter.ToBytes(micro);
    }

    /// <summary>Median seconds per run of each model on the same random input, the models run
    /// round-robin so a slow stretch of the machine hits them all.</summary>
    private static double[] Time(byte[][] models, int rows, int k)
    {
        using var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            IntraOpNumThreads = Environment.ProcessorCount,
            InterOpNumThreads = 1,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        // Sessions run interleaved: an idle session's threads must not spin on the cores.
        options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        var sessions = models.Select(m => new InferenceSession(m, options)).ToArray();
        try
        {
            var random = new Random(3);
            var data = Enumerable.Range(0, rows * k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
            using var input = OrtValue.CreateTensorValueFromMemory(data, [rows, k]);
            using var runOptions = new RunOptions();
            var times = models.Select(_ => new List<double>()).ToArray();
            for (int round = 0; round < Warmup + Rounds; round++)
                for (int i = 0; i < sessions.Length; i++)
                {
                    var sw = Stopwatch.StartNew();
                    using (sessions[i].Run(runOptions, ["x"], [input], ["y"])) { }
                    if (round >= Warmup) times[i].Add(sw.Elapsed.TotalSeconds);
                }
            return times.Select(t => t.Order().ElementAt(t.Count / 2)).ToArray();
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
        }
    }
}
