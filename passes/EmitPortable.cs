using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// Portable emitter: writes every fitted site in standard ONNX — uniform quantizers as
/// QuantizeLinear/DequantizeLinear, the others as small fake-quant subgraphs of plain ops (see
/// each <see cref="FittedQuantizer.EmitPortable"/>) — placed before the site's first use. Only the
/// planned uses are rewired; other readers keep the float value (e.g. a residual connection).
/// </summary>
internal sealed class EmitPortable : IPass
{
    public string Name => "emit-portable";
    public PassContract Contract { get; } = new([Stages.Fitted], [Stages.PortableEmitted]);

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var graph = model.Graph;
        if (plan.Sites.Count > 0 && model.DefaultOpset < 13)
            throw new OnnxViTQException($"the model imports ONNX opset {model.DefaultOpset}; per-channel QuantizeLinear/DequantizeLinear need opset 13 or later (re-export with opset_version=13 or newer)");
        var order = graph.Nodes.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i);
        int emitted = 0;
        foreach (var site in plan.Sites)
        {
            // Every use lowered to a native or ONNX Runtime op: nothing left to emit.
            if (site.Uses.Count == 0) continue;
            var q = site.Parameters ?? throw new InvalidOperationException($"site '{site.Name}' has no fitted quantizer; run fit-quantizers first");
            var firstUse = site.Uses.Select(u => u.Node).MinBy(n => order[n])!;
            var dequantized = q.EmitPortable(new PortableBuilder(model, firstUse, site.Name), site);
            dequantized.Type = site.Value.Type;
            var uses = site.Uses.ToHashSet();
            site.Value.ReplaceUsesWith(dequantized, uses.Contains);
            emitted++;
        }
        return new PassResult(emitted > 0);
    }
}
