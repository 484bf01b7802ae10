using OnnxViTQ.Ir;
using OnnxViTQ.Passes.Analysis;
using OnnxViTQ.Patterns;

namespace OnnxViTQ.Passes.Reparameterize;

/// <summary>
/// The one exact FP32 rewrite behind every LayerNorm reparameterization (RepQ-ViT, DopQ-ViT's
/// MOSF, AOCQ's channel balancing, the outlier-variant tool): the LayerNorm output y becomes
/// y' = (y − δ)/r per channel c, and every linear layer reading it compensates:
/// <code>
///   γ' = γ/r,   β' = (β − δ)/r                    (LayerNorm affine)
///   W'[c, :] = r_c·W[c, :]  (rows of the K axis)   b' = b + Σ_c δ_c·W[c, :]   (each linear)
/// </code>
/// so W'·y' + b' = W·y + b. Data movement between them (transposes, window partition, token
/// gathers, spatial averages) commutes with a per-channel affine map. With zero padding on the
/// way (Swin) δ must be 0: a padded zero would otherwise become −δ/r. Weights and affine
/// constants shared with nodes outside the group are copied, not changed in place.
/// </summary>
internal static class ChannelAffineFold
{
    public static void Apply(Model model, LayerNormGroup group, ReadOnlySpan<float> scale, ReadOnlySpan<float> shift)
    {
        if (!group.Foldable) throw new InvalidOperationException($"LayerNorm '{group.Name}' cannot be folded: {group.Refusal}");
        int n = group.Channels;
        if (scale.Length != n || shift.Length != n) throw new ArgumentException($"LayerNorm '{group.Name}' has {n} channels, got {scale.Length} scales and {shift.Length} shifts");
        bool shifts = false;
        for (int c = 0; c < n; c++)
        {
            if (!(scale[c] > 0) || !float.IsFinite(scale[c])) throw new ArgumentException($"scale of channel {c} is {scale[c]}; scales must be positive");
            if (!float.IsFinite(shift[c])) throw new ArgumentException($"shift of channel {c} is {shift[c]}");
            shifts |= shift[c] != 0;
        }
        if (shifts && group.ZeroPadded) throw new InvalidOperationException($"LayerNorm '{group.Name}' is zero-padded before its linear layers: only a scale (δ = 0) folds exactly");
        var ln = group.LayerNorm;
        if (shifts && ln.Beta is null) throw new InvalidOperationException($"LayerNorm '{group.Name}' has no shift β to fold δ into");

        var graph = model.Graph;
        var gamma = Floats(ln.Gamma!);
        var newGamma = new float[n];
        for (int c = 0; c < n; c++) newGamma[c] = gamma[c] / scale[c];
        SetConstant(graph, ConsumerOf(ln, ln.Gamma!), ln.Gamma!, Like(ln.Gamma!, newGamma));
        if (ln.Beta is not null)
        {
            var beta = Floats(ln.Beta);
            var newBeta = new float[n];
            for (int c = 0; c < n; c++) newBeta[c] = (beta[c] - shift[c]) / scale[c];
            SetConstant(graph, ConsumerOf(ln, ln.Beta), ln.Beta, Like(ln.Beta, newBeta));
        }

        var done = new HashSet<Value>();
        foreach (var linear in group.Linears)
        {
            var weight = linear.Node.Inputs[1]!;
            if (!done.Add(weight)) continue; // a weight read by several linears of the group changes once
            Constants.TryGetTensor(weight, out var w);
            var values = w.ToFloats();
            // K is the row axis of MatMul's [K, N] and of Gemm's B without transB; the column axis with transB.
            bool kIsColumn = linear.IsGemm && linear.Node.GetInt("transB", 0) == 1;
            int rows = (int)w.Dims[0], cols = (int)w.Dims[1];
            int outputs = kIsColumn ? rows : cols;
            var biasDelta = new double[outputs];
            var scaled = new float[values.Length];
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++)
                {
                    int k = kIsColumn ? j : i, o = kIsColumn ? i : j;
                    float x = values[i * cols + j];
                    scaled[i * cols + j] = x * scale[k];
                    biasDelta[o] += (double)shift[k] * x;
                }
            var readers = group.Linears.Where(l => ReferenceEquals(l.Node.Inputs[1], weight)).Select(l => l.Node).ToList();
            SetConstant(graph, readers, weight, Tensor.FromFloats(w.Dims, scaled));
            if (shifts)
                foreach (var node in readers) AddToBias(graph, node, biasDelta.Select(d => (float)d).ToArray());
        }
    }

    /// <summary>b' = b + delta for a MatMul's following bias Add, Gemm's C, or a new Add.</summary>
    private static void AddToBias(Graph graph, Node linear, float[] delta)
    {
        if (linear.OpType == "Gemm")
        {
            if (linear.Input(2) is { } c && Constants.TryGetTensor(c, out var ct) && ct.ElementCount == delta.Length)
                SetConstant(graph, [linear], c, Like(c, Add(ct.ToFloats(), delta)));
            else if (linear.Input(2) is null)
                linear.SetInput(2, graph.AddInitializer(graph.UniqueName(linear.Name + "_folded_bias"), Tensor.FromFloats([delta.Length], delta)));
            else throw new InvalidOperationException($"Gemm '{linear.Name}' has a bias that is not a vector constant");
            return;
        }
        var output = linear.Output();
        if (output.Consumers is [{ Node: { OpType: "Add" } add }] && !output.IsGraphOutput
            && add.Inputs.FirstOrDefault(i => !ReferenceEquals(i, output)) is { } b && Constants.TryGetTensor(b, out var bt) && bt.ElementCount == delta.Length)
        {
            SetConstant(graph, [add], b, Like(b, Add(bt.ToFloats(), delta)));
            return;
        }
        if (output.IsGraphOutput) throw new InvalidOperationException($"'{output.Name}' is a graph output; cannot add a bias after it");
        var readers = output.Consumers.ToList();
        var bias = graph.AddInitializer(graph.UniqueName(linear.Name + "_folded_bias"), Tensor.FromFloats([delta.Length], delta));
        var next = readers.Select(u => u.Node).FirstOrDefault();
        var sum = graph.AddNode("Add", [output, bias], [output.Name + "_biased"], name: graph.UniqueName(linear.Name + "_FoldedBias"), before: next);
        sum.Output().Type = output.Type;
        output.ReplaceUsesWith(sum.Output(), u => !ReferenceEquals(u.Node, sum));
    }

    private static float[] Add(float[] a, float[] b)
    {
        var r = new float[a.Length];
        for (int i = 0; i < a.Length; i++) r[i] = a[i] + b[i];
        return r;
    }

    private static IReadOnlyList<Node> ConsumerOf(LayerNormMatch ln, Value constant) =>
        ln.Decomposed ? [ReferenceEquals(constant, ln.Gamma) ? ln.AffineMul! : ln.AffineAdd!] : [ln.Root];

    private static float[] Floats(Value v) => Constants.TryGetTensor(v, out var t) ? t.ToFloats() : throw new InvalidOperationException($"'{v.Name}' is not constant");

    private static Tensor Like(Value original, float[] values)
    {
        Constants.TryGetTensor(original, out var t);
        return Tensor.FromFloats(t.Dims, values);
    }

    /// <summary>Gives <paramref name="readers"/> the new constant: in place when nothing else
    /// reads the initializer, otherwise as a copy only they read.</summary>
    private static void SetConstant(Graph graph, IReadOnlyList<Node> readers, Value constant, Tensor tensor)
    {
        bool exclusive = constant.IsInitializer && ReferenceEquals(constant.Graph, graph) && constant.Consumers.All(u => readers.Contains(u.Node)) && !constant.IsGraphOutput;
        if (exclusive)
        {
            graph.SetInitializer(constant, tensor);
            return;
        }
        var copy = graph.AddInitializer(graph.UniqueName(constant.Name + "_folded"), tensor);
        foreach (var use in constant.Consumers.ToList())
            if (readers.Contains(use.Node)) use.Node.SetInput(use.InputIndex, copy);
        Rewriter.DropIfUnused(constant);
    }
}
