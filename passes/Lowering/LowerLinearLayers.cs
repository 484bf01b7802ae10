using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>A target a quantized linear layer can be lowered to (our native op, an ONNX Runtime
/// contrib op).</summary>
internal interface ILinearLowering
{
    string Name { get; }

    /// <summary>The stage its lowered layers establish besides linears-lowered (null: none).</summary>
    Stage? Produces => null;

    /// <summary>Operator sets its replacement nodes may use.</summary>
    IReadOnlyList<OpsetImport> Opsets { get; }

    /// <summary>Why the layer stays portable, or null when <see cref="Emit"/> lowers it.</summary>
    string? Declines(LinearLayer layer, Model model);

    /// <summary>Adds the layer's replacement through <paramref name="r"/> (before the layer) and
    /// returns it, with a one-line <paramref name="detail"/> for the report.</summary>
    LoweredLayer Emit(LinearLayer layer, Rewriter r, out string detail);
}

/// <summary>A lowered layer: its float output, and the new node that reads the activation as the
/// plan's portable quantizer leaves it — or null when the new ops quantize the float input
/// themselves (the activation site then drops this use).</summary>
internal sealed record LoweredLayer(Value Output, Node? QuantizedInputReader);

/// <summary>
/// Passes <c>lower-native</c> and <c>lower-ort</c>: one rewrite rule that replaces every quantized
/// linear layer the target can run by the target's ops, reading the plan (each site's fitted
/// quantizer) rather than the emitted graph. Lowered uses leave the plan, so the portable emitter
/// that runs next writes QDQ only for what is left (attention matmuls, quantizers without a
/// native form). The layer's output keeps its name and position.
/// </summary>
internal static class LowerLinearLayers
{
    public static RewriteRulesPass Pass(ILinearLowering target)
    {
        var rule = new MatchRule<LinearLayer>($"lower-{target.Name}",
            (model, node, context) => LinearLayer.Match(node, context.Get<QuantizationPlan>()) is not { } layer ? RuleAttempt.NotHere
                : target.Declines(layer, model) is { } why ? RuleAttempt.Decline(why, layer)
                : RuleAttempt.Matched(layer),
            (layer, r) => Lower(target, layer, r))
        {
            Opsets = target.Opsets,
            OnDeclined = (layer, why, context) =>
            {
                var plan = context.Get<QuantizationPlan>();
                plan.Update(plan.For(layer!.Weight.Value).WithNote($"{layer.Name}: kept portable: {why}"));
            },
        };
        // It reads the fitted plan and takes uses away from it, so it runs before emission.
        var contract = new PassContract([Stages.Fitted], [Stages.LinearsLowered, .. target.Produces is { } s ? [s] : Array.Empty<Stage>()], [Stages.PortableEmitted]);
        return new RewriteRulesPass($"lower-{target.Name}", [rule], contract)
        {
            Summary = done => $"{done.Total} linear layer(s) lowered to {target.Name}" +
                              (done.Declined.Count == 0 ? "" : $"; {done.Declined.Count} kept portable: {string.Join("; ", done.Declined.Select(d => $"{d.Node.Name} ({d.Reason})"))}"),
        };
    }

    private static void Lower(ILinearLowering target, LinearLayer layer, Rewriter r)
    {
        var replacement = target.Emit(layer, r, out string detail);
        r.ReplaceOutput(layer.Output, replacement.Output, layer.BiasAdd is { } add ? [add, layer.Node] : [layer.Node]);
        var reader = replacement.QuantizedInputReader;
        r.Consumed(layer.Input, new Use(layer.Node, 0), reader: reader is null ? null : new Use(reader, reader.Inputs.ToList().IndexOf(layer.Input)));
        r.Consumed(layer.Weight.Value, new Use(layer.Node, 1), $"{layer.Name}: {detail}");
        r.Context.Set(new LoweredLinearLayers([.. r.Context.TryGet<LoweredLinearLayers>(out var earlier) ? earlier.Nodes : [], layer.Name]));
    }
}

/// <summary>The linear layers a lowering replaced (their uses leave the plan, which then lists
/// only what stays portable).</summary>
internal sealed record LoweredLinearLayers(IReadOnlyList<string> Nodes);
