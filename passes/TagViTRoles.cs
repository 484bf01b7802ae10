using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Analysis;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// Analysis: gives every activation site of the plan its role in the vision transformer, from
/// the structure of the export (<see cref="ViTPatterns"/>), and labels sites with their module:
/// <list type="bullet">
/// <item>input of a linear layer coming (through data movement: Transpose, Reshape, Slice, Pad,
///   Swin's roll and window partition) from a LayerNorm → <c>post-layernorm</c>; from a GELU →
///   <c>post-gelu</c>; from an attn·V product → <c>attention-output</c>;</item>
/// <item>MatMul of two computed tensors whose left input comes from a Softmax: attn·V →
///   <c>post-softmax</c> and <c>value</c>; one whose output reaches a Softmax (through scaling,
///   relative position bias, shift masks): Q·Kᵀ → <c>query</c> and <c>key</c>.</item>
/// </list>
/// Anything else stays <c>other</c> with a note saying why, and recipes give it the baseline
/// quantizer: a pattern this pass does not know is never guessed.
/// </summary>
internal sealed class TagViTRoles : IPass
{
    public string Name => "tag-roles";
    public PassContract Contract { get; } = new([Stages.SitesSelected], [Stages.RolesTagged], [Stages.QuantizersAssigned]);

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var modules = new ModuleIndex(model.Graph);
        int unrecognised = 0;
        foreach (var site in plan.Sites.ToList())
        {
            if (site.IsWeight)
            {
                var node = site.Uses[0].Node;
                plan.Update(site with { Module = modules.Of(node, node.Input(0)) });
                continue;
            }
            var roles = site.Uses.Select(u => RoleOf(u, out var why) is { } r ? (r, (string?)null) : (TensorRole.Other, why)).ToList();
            var distinct = roles.Select(r => r.Item1).Distinct().ToList();
            var tagged = site with { Module = modules.Of(site.Uses[0].Node, site.Value) };
            if (distinct.Count == 1 && roles.All(r => r.Item2 is null))
                tagged = tagged with { Role = distinct[0] };
            else
            {
                string why = distinct.Count > 1
                    ? $"read as {string.Join(" and ", distinct.Select(r => r.Name()))} by different nodes"
                    : roles.First(r => r.Item2 is not null).Item2!;
                tagged = tagged with { Role = TensorRole.Other };
                tagged = tagged.WithNote($"role not recognised: {why}; baseline quantizer");
                unrecognised++;
                context.Info($"'{site.Name}': role not recognised ({why})");
            }
            plan.Update(tagged);
        }
        var counts = plan.Activations.GroupBy(s => s.Role).OrderBy(g => g.Key).Select(g => $"{g.Count()} {g.Key.Name()}");
        context.Info($"roles: {string.Join(", ", counts)}{(unrecognised > 0 ? $" ({unrecognised} not recognised)" : "")}");
        return PassResult.Unchanged;
    }

    /// <summary>The role of the tensor read by <paramref name="use"/>, or null with the reason.</summary>
    public static TensorRole? RoleOf(Use use, out string why)
    {
        why = "";
        var node = use.Node;
        var input = node.Inputs[use.InputIndex]!;
        if (input.IsGraphInput) return TensorRole.Input;
        if (node.OpType == "Conv")
        {
            if (use.InputIndex != 0) { why = $"input {use.InputIndex} of convolution '{node.Name}'"; return null; }
            return ConvShape.IsDepthwise(node) ? TensorRole.DepthwiseInput : TensorRole.ConvInput;
        }
        if (ViTPatterns.IsLinear(node) && use.InputIndex == 0)
        {
            var source = ViTPatterns.Source(input, throughConstantScaling: false);
            // Swin's head averages the final LayerNorm's output over space: still post-LN channels.
            while (source is { OpType: "GlobalAveragePool" or "ReduceMean" } pool)
                source = ViTPatterns.Source(pool.Inputs[0]!, throughConstantScaling: false);
            if (source is null) { why = $"input of linear '{node.Name}' is a graph input"; return null; }
            if (ViTPatterns.LayerNorm(source) is not null) return TensorRole.PostLayerNorm;
            if (ViTPatterns.IsGelu(source, out _)) return TensorRole.PostGelu;
            if (IsAttentionValueProduct(source)) return TensorRole.AttentionOutput;
            // A hybrid's tokens come from its convolutional part (a 1×1 convolution, flattened).
            if (source.OpType == "Conv") return TensorRole.ConvInput;
            why = $"input of linear '{node.Name}' comes from {source.OpType} '{source.Name}', not a LayerNorm, GELU or attention product";
            return null;
        }
        if (ViTPatterns.IsActivationProduct(node))
        {
            if (IsAttentionValueProduct(node)) return use.InputIndex == 0 ? TensorRole.PostSoftmax : TensorRole.Value;
            if (ViTPatterns.SoftmaxAfter(node) is not null) return use.InputIndex == 0 ? TensorRole.Query : TensorRole.Key;
            why = $"'{node.Name}' multiplies two computed tensors but neither reads nor leads to a Softmax";
            return null;
        }
        why = $"input {use.InputIndex} of {node.OpType} '{node.Name}'";
        return null;
    }

    /// <summary>attn·V: a MatMul of computed tensors whose left operand comes from a Softmax.</summary>
    public static bool IsAttentionValueProduct(Node n) =>
        ViTPatterns.IsActivationProduct(n) && ViTPatterns.Source(n.Inputs[0]!, throughConstantScaling: true) is { OpType: "Softmax" };

    /// <summary>Numbers attention modules by their Softmax and MLP modules by their GELU, in graph
    /// order, and finds the module of a quantized node.</summary>
    private sealed class ModuleIndex
    {
        private readonly Dictionary<Node, int> _attention = [];
        private readonly Dictionary<Node, int> _mlp = [];
        private readonly Dictionary<Node, int> _conv = [];

        public ModuleIndex(Graph graph)
        {
            foreach (var n in graph.Nodes)
            {
                if (n.OpType == "Softmax") _attention[n] = _attention.Count;
                else if (ViTPatterns.IsGelu(n, out _)) _mlp[n] = _mlp.Count;
                else if (n.OpType == "Conv" && !ConvShape.IsPatchEmbedding(n)) _conv[n] = _conv.Count;
            }
        }

        public string Of(Node node, Value? input)
        {
            // A ViT's patchify convolution is its patch embedding; a hybrid's convolutions are
            // numbered in graph order ("conv 0" is its stem).
            if (node.OpType == "Conv") return _conv.TryGetValue(node, out int c) ? $"conv {c}" : "patch embedding";
            if (ViTPatterns.IsActivationProduct(node))
            {
                var softmax = IsAttentionValueProduct(node) ? ViTPatterns.Source(node.Inputs[0]!, true) : ViTPatterns.SoftmaxAfter(node);
                return softmax is not null && _attention.TryGetValue(softmax, out int a) ? $"attention {a}" : "";
            }
            if (input is not null && ViTPatterns.Source(input, false) is { } source)
            {
                if (ViTPatterns.IsGelu(source, out _) && _mlp.TryGetValue(source, out int m)) return $"mlp {m}";
                if (IsAttentionValueProduct(source)) return Of(source, null);
            }
            return Downstream(node);
        }

        /// <summary>The module a linear layer feeds (qkv → its attention, fc1 → its MLP), or "head".</summary>
        private string Downstream(Node linear)
        {
            var frontier = new Queue<(Value V, int Depth)>(linear.Outputs.OfType<Value>().Select(o => (o, 0)));
            var seen = new HashSet<Node>();
            while (frontier.Count > 0)
            {
                var (v, depth) = frontier.Dequeue();
                if (v.IsGraphOutput) return "head";
                foreach (var use in v.Consumers)
                {
                    var c = use.Node;
                    if (!seen.Add(c)) continue;
                    if (ViTPatterns.IsActivationProduct(c)) return Of(c, null);
                    if (_mlp.ContainsKey(c)) return $"mlp {_mlp[c]}";
                    bool passes = ViTPatterns.IsDataMovement(c) || c.OpType is "Add" or "Mul" or "Div" or "Erf" or "Tanh" or "Pow";
                    if (passes && depth < 12)
                        foreach (var o in c.Outputs.OfType<Value>()) frontier.Enqueue((o, depth + 1));
                }
            }
            return "";
        }
    }
}
