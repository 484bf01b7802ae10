using OnnxViTQ.Ir;
using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>Fits every site that has a quantizer spec but no parameters yet (a reparameterization
/// may already have set some), through its kind's <see cref="IQuantizerKind.Fit"/>.</summary>
internal sealed class FitQuantizers : IPass
{
    public string Name => "fit-quantizers";
    public PassContract Contract { get; } = new([Stages.QuantizersAssigned], [Stages.Fitted], [Stages.PortableEmitted, Stages.LinearsLowered]);

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        context.TryGet<ActivationStatistics>(out var stats);
        var fit = new FitContext(stats);
        int fitted = 0;
        foreach (var site in plan.Sites.ToList())
        {
            if (site.Parameters is not null) continue;
            var spec = site.Spec ?? throw new InvalidOperationException($"site '{site.Name}' has no quantizer; run assign-quantizers first");
            plan.Update(site with { Parameters = spec.KindInfo.Fit(site, fit) });
            fitted++;
        }
        context.Set(new QuantizersFitted());
        context.Info($"fitted {fitted} quantizers");
        return PassResult.Unchanged;
    }
}
