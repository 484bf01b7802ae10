using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// A planned MatMul of two quantized activations (the attention products Q·Kᵀ and softmax·V) as
/// the compile-time searches and error measurements see it. Its operands are evaluated on the
/// leading calibration samples both were captured on (<see cref="LeadingSlicesObserver"/>), so a
/// query row meets the keys of its own image.
/// </summary>
internal sealed record ActivationProduct(Node Node, QuantizationSite Left, QuantizationSite Right)
{
    /// <summary>The product at <paramref name="node"/>, or null when it is not a MatMul whose two
    /// inputs are fitted, non-weight quantization sites.</summary>
    public static ActivationProduct? Of(Node node, QuantizationPlan plan)
    {
        if (node.OpType != "MatMul" || node.Domain.Length > 0 || !Analysis.ViTPatterns.IsActivationProduct(node)) return null;
        if (!plan.TryGet(node.Input(0)!, out var left) || left.IsWeight || left.Parameters is null) return null;
        if (!plan.TryGet(node.Input(1)!, out var right) || right.IsWeight || right.Parameters is null) return null;
        return new ActivationProduct(node, left, right);
    }

    /// <summary>True when the product's output reaches a Softmax (attention scores, where the
    /// ranking loss applies).</summary>
    public bool IsAttentionScores => Analysis.ViTPatterns.SoftmaxAfter(Node) is not null;

    /// <summary>The constant factor the scores are multiplied by on their way to the Softmax
    /// (a chain of Mul/Div by scalar constants right after the product; 1 when there is none).
    /// Relative position biases and masks added later are not applied.</summary>
    public float ScoreScale
    {
        get
        {
            float factor = 1;
            var value = Node.Output();
            while (value.Consumers.Count == 1 && value.Consumers[0].Node is { OpType: "Mul" or "Div", Domain: "" } op && op.Inputs.Count == 2)
            {
                var other = op.Input(1 - value.Consumers[0].InputIndex);
                if (other is null || !Patterns.Constants.TryGetTensor(other, out var t) || t.ElementCount != 1) break;
                float c = t.ToFloats()[0];
                if (op.OpType == "Div" && value.Consumers[0].InputIndex != 0) break;
                factor *= op.OpType == "Mul" ? c : 1 / c;
                value = op.Output();
            }
            return factor;
        }
    }

    /// <summary>Softmax over each row of width <paramref name="n"/> of <paramref name="scale"/>·scores:
    /// the attention maps the scores become.</summary>
    public static float[] AttentionMaps(float[] scores, int n, float scale)
    {
        var maps = new float[scores.Length];
        for (int r = 0; r < scores.Length / n; r++)
        {
            var row = scores.AsSpan(r * n, n);
            var map = maps.AsSpan(r * n, n);
            for (int j = 0; j < n; j++) map[j] = scale * row[j];
            System.Numerics.Tensors.TensorPrimitives.SoftMax(map, map);
        }
        return maps;
    }

    /// <summary>The captured operands as matrix pairs, or null when the two captures do not pair
    /// up as a plain batched product (broadcast leading axes, mismatched inner sizes, no capture).</summary>
    public ProductSample? Sample(ActivationStatistics stats, int maxRows)
    {
        if (!stats.Has(Left.Value, ObserverKeys.Slices) || !stats.Has(Right.Value, ObserverKeys.Slices)) return null;
        var a = stats.Get<LeadingSlicesObserver>(Left.Value, ObserverKeys.Slices);
        var b = stats.Get<LeadingSlicesObserver>(Right.Value, ObserverKeys.Slices);
        int count = Math.Min(a.Count, b.Count);
        if (count == 0 || a.SliceShape.Count < 2 || a.SliceShape.Count != b.SliceShape.Count) return null;
        int rank = a.SliceShape.Count;
        for (int i = 0; i < rank - 2; i++)
            if (a.SliceShape[i] != b.SliceShape[i]) return null;
        if (a.SliceShape[rank - 1] != b.SliceShape[rank - 2]) return null;
        int m = (int)a.SliceShape[rank - 2], k = (int)a.SliceShape[rank - 1], n = (int)b.SliceShape[rank - 1];
        int pairs = count * (int)a.SliceShape.Take(rank - 2).Aggregate(1L, (x, y) => x * y);
        return new ProductSample(a.Data[..(pairs * m * k)].ToArray(), [count, .. a.SliceShape], b.Data[..(pairs * k * n)].ToArray(), [count, .. b.SliceShape],
            pairs, m, k, n, maxRows);
    }
}

/// <summary>
/// Operands of a batched product [P, M, K]·[P, K, N] on captured calibration samples, and the
/// product evaluated on a fixed, evenly spaced subset of each pair's M rows (at most about
/// <c>maxRows</c> rows in all), so a search's cost does not grow with the token count squared.
/// </summary>
internal sealed class ProductSample
{
    private readonly int[] _rows;

    public ProductSample(float[] left, long[] leftShape, float[] right, long[] rightShape, int pairs, int m, int k, int n, int maxRows)
    {
        (Left, LeftShape, Right, RightShape, Pairs, M, K, N) = (left, leftShape, right, rightShape, pairs, m, k, n);
        int perPair = Math.Clamp((maxRows + pairs - 1) / pairs, 1, m);
        _rows = Enumerable.Range(0, perPair).Select(i => (int)((long)i * m / perPair)).ToArray();
    }

    public float[] Left { get; }
    public long[] LeftShape { get; }
    public float[] Right { get; }
    public long[] RightShape { get; }
    public int Pairs { get; }
    public int M { get; }
    public int K { get; }
    public int N { get; }

    /// <summary>Output rows evaluated: pairs × selected rows.</summary>
    public int Rows => Pairs * _rows.Length;

    /// <summary>Selected rows per pair: the output is <see cref="Pairs"/> consecutive blocks of this many rows.</summary>
    public int RowsPerPair => _rows.Length;

    /// <summary>The selected output rows of left·right, [Rows, N]; the operands have
    /// <see cref="LeftShape"/> and <see cref="RightShape"/> (the captures, or simulated copies).</summary>
    public float[] Multiply(float[] left, float[] right)
    {
        int perPair = _rows.Length;
        var output = new float[Rows * N];
        Parallel.For(0, Pairs, p =>
        {
            var bt = new float[N * K];
            int b0 = p * K * N;
            for (int i = 0; i < K; i++)
                for (int j = 0; j < N; j++) bt[j * K + i] = right[b0 + i * N + j];
            for (int ri = 0; ri < perPair; ri++)
            {
                var row = left.AsSpan((p * M + _rows[ri]) * K, K);
                int o = (p * perPair + ri) * N;
                for (int j = 0; j < N; j++) output[o + j] = System.Numerics.Tensors.TensorPrimitives.Dot(row, bt.AsSpan(j * K, K));
            }
        });
        return output;
    }

    /// <summary>The operand with <paramref name="quantizer"/> applied (quantize-dequantize).</summary>
    public static float[] Simulated(float[] values, long[] shape, FittedQuantizer quantizer)
    {
        var copy = (float[])values.Clone();
        quantizer.Simulate(copy, shape);
        return copy;
    }
}
