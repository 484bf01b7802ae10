using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>A target a quantized linear layer can be lowered to (our native op, an ONNX Runtime
/// contrib op).</summary>
internal interface ILinearLowering
{
    string Name { get; }

    /// <summary>The stage its lowered layers establish besides linears-lowered (null: none).</summary>
    Stage? Produces => null;

    /// <summary>Adds the layer's replacement just before <c>layer.Node</c> and returns it, with a
    /// one-line <paramref name="detail"/> for the report; or returns null with the reason in
    /// <paramref name="detail"/> when the layer stays portable.</summary>
    LoweredLayer? Emit(LinearLayer layer, Model model, out string detail);
}

/// <summary>A lowered layer: its float output, and the new node that reads the activation as the
/// plan's portable quantizer leaves it — or null when the new ops quantize the float input
/// themselves (the activation site then drops this use).</summary>
internal sealed record LoweredLayer(Value Output, Node? QuantizedInputReader);

/// <summary>
/// Replaces every quantized linear layer the target can run by the target's op, reading the
/// plan (each site's fitted quantizer) rather than the emitted graph. Lowered uses leave the
/// plan, so the portable emitter that runs next writes QDQ only for what is left (attention
/// matmuls, quantizers without a native form). The layer's output keeps its name and position.
/// </summary>
internal sealed class LowerLinearLayers(ILinearLowering target) : IPass
{
    public string Name => $"lower-{target.Name}";

    /// <summary>It reads the fitted plan and takes uses away from it, so it runs before emission.</summary>
    public PassContract Contract { get; } = new([Stages.Fitted], [Stages.LinearsLowered, .. target.Produces is { } s ? [s] : Array.Empty<Stage>()], [Stages.PortableEmitted]);

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var graph = model.Graph;
        var lowered = new List<string>();
        var kept = new List<string>();
        foreach (var node in graph.Nodes.ToList())
        {
            if (node.IsRemoved) continue;
            var layer = LinearLayer.Match(node, plan);
            if (layer is null) continue;
            var replacement = target.Emit(layer, model, out string detail);
            if (replacement is null)
            {
                kept.Add($"{layer.Name} ({detail})");
                plan.Update(plan.For(layer.Weight.Value).WithNote($"{layer.Name}: kept portable: {detail}"));
                continue;
            }
            var activation = plan.For(layer.Activation.Value);
            Rewire(graph, layer, replacement.Output);
            plan.Update(activation with
            {
                Uses = activation.Uses.Where(u => u != new Use(layer.Node, 0))
                    .Concat(replacement.QuantizedInputReader is { } reader ? [new Use(reader, reader.Inputs.ToList().IndexOf(layer.Input))] : []).ToList(),
            });
            var weight = plan.For(layer.Weight.Value);
            var remaining = weight.Uses.Where(u => u != new Use(layer.Node, 1)).ToList();
            plan.Update((weight with { Uses = remaining }).WithNote($"{layer.Name}: {detail}"));
            lowered.Add(layer.Name);
        }
        context.Set(new LoweredLinearLayers([.. context.TryGet<LoweredLinearLayers>(out var earlier) ? earlier.Nodes : [], .. lowered]));
        context.Info($"{lowered.Count} linear layer(s) lowered to {target.Name}" + (kept.Count == 0 ? "" : $"; {kept.Count} kept portable: {string.Join("; ", kept)}"));
        return new PassResult(lowered.Count > 0);
    }

    private static void Rewire(Graph graph, LinearLayer layer, Value replacement) =>
        NodeReplacement.Replace(graph, layer.Output, replacement, layer.BiasAdd is { } add ? [add, layer.Node] : [layer.Node]);
}

/// <summary>Puts a lowered op's output in the place of a value: every reader and the graph
/// output move to it (which keeps the old name), and the nodes it replaces are removed.</summary>
internal static class NodeReplacement
{
    public static void Replace(Graph graph, Value old, Value replacement, IReadOnlyList<Node> replaced)
    {
        replacement.Type = old.Type;
        old.ReplaceUsesWith(replacement);
        string? outputName = old.IsGraphOutput ? old.Name : null;
        if (outputName is not null) graph.ReplaceOutput(old, replacement);
        foreach (var node in replaced) graph.RemoveNode(node);
        if (outputName is not null) graph.Rename(replacement, outputName);
    }
}

/// <summary>Imports an op domain at a version (once).</summary>
internal static class OpsetImports
{
    public static void Ensure(Model model, string domain, long version)
    {
        long have = model.OpsetVersion(domain);
        if (have >= version) return;
        model.OpsetImports.RemoveAll(o => o.Domain == domain);
        model.OpsetImports.Add(new OpsetImport(domain, version));
    }
}

/// <summary>The linear layers a lowering replaced (their uses leave the plan, which then lists
/// only what stays portable).</summary>
internal sealed record LoweredLinearLayers(IReadOnlyList<string> Nodes);
