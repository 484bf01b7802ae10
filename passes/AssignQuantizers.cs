using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// Gives every site its quantizer spec from the recipe's <see cref="QuantizerTable"/>: a per-site
/// override (by tensor or node name) first, then the site's role. First, what the user keeps in
/// float — <paramref name="exclusions"/> and overrides of kind <c>float</c> — leaves the plan
/// (listed in <see cref="QuantizationPlan.Excluded"/>). Overrides and exclusions are validated
/// against the model before anything else runs: one naming nothing of the model is an error, as is
/// an override whose kind does not apply to the site.
/// </summary>
internal sealed class AssignQuantizers(QuantizerTable table, BitWidths bits, string recipe, Exclusions? exclusions = null) : IPass
{
    public string Name => "assign-quantizers";
    public PassContract Contract { get; } = new([Stages.SitesSelected, Stages.RolesTagged], [Stages.QuantizersAssigned], [Stages.Statistics]);

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        table.Validate(bits, recipe);
        var floatOverrides = table.Overrides.Where(kv => kv.Value.IsFloat).Select(kv => kv.Key);
        new Exclusions([.. (exclusions ?? Exclusions.None).Patterns, .. floatOverrides]).Apply(plan, $"recipe '{recipe}'");
        foreach (var g in plan.Excluded.GroupBy(e => e.Pattern))
            context.Info($"kept in float by '{g.Key}': {string.Join(", ", g.Select(e => $"{e.Node} input {e.Input}"))}");
        var byName = new Dictionary<string, List<QuantizationSite>>(StringComparer.Ordinal);
        foreach (var site in plan.Sites)
        {
            Add(byName, site.Name, site);
            foreach (var use in site.Uses) Add(byName, use.Node.Name, site);
        }
        // A tensor-name override beats a node-name one; a node-name override applies to the
        // node's inputs its kind fits (weight kinds to the weight, activation kinds to the activation).
        var overridden = new Dictionary<Value, (string Key, QuantizerChoice Choice, bool ByTensor)>();
        foreach (var (key, choice) in table.Overrides.Where(kv => !kv.Value.IsFloat))
        {
            if (!byName.TryGetValue(key, out var sites))
                throw new OnnxViTQException($"recipe '{recipe}': override '{key}' names no quantized tensor or node of the model (`onnxvitq inspect` lists them)");
            var kind = QuantizerRegistry.Get(choice.Kind);
            var fitting = sites.Where(s => kind.Target == QuantizerTarget.Both || (kind.Target == QuantizerTarget.Weights) == s.IsWeight).ToList();
            if (fitting.Count == 0)
                throw new OnnxViTQException($"recipe '{recipe}': override '{key}': quantizer '{kind.Name}' applies to none of the tensors it names ({string.Join(", ", sites.Select(s => $"'{s.Name}' ({s.Role.Name()})"))})");
            foreach (var site in fitting)
            {
                bool byTensor = key == site.Name;
                if (!overridden.TryGetValue(site.Value, out var existing) || (byTensor && !existing.ByTensor))
                    overridden[site.Value] = (key, choice, byTensor);
            }
        }
        foreach (var site in plan.Sites.ToList())
        {
            var spec = overridden.TryGetValue(site.Value, out var o)
                ? o.Choice.Resolve(site.Role, bits, $"recipe '{recipe}', override '{o.Key}' for '{site.Name}'")
                : table.For(site.Role).Resolve(site.Role, bits, $"recipe '{recipe}', {site.Role.Name()}");
            plan.Update(site with { Spec = spec, Parameters = null });
        }
        context.Set(new QuantizersAssigned());
        foreach (var g in plan.Sites.GroupBy(s => (s.Role, s.Spec!.ToString())))
            context.Info($"{g.Count()} {g.Key.Role.Name()} → {g.Key.Item2}");
        return PassResult.Unchanged;
    }

    private static void Add(Dictionary<string, List<QuantizationSite>> map, string key, QuantizationSite site)
    {
        if (!map.TryGetValue(key, out var list)) map[key] = list = [];
        if (!list.Contains(site)) list.Add(site);
    }
}
