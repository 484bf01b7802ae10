using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;

namespace OnnxViTQ.Patterns;

/// <summary>
/// A declarative rewrite: where <see cref="Pattern"/> matches and <see cref="Check"/> returns
/// null, <see cref="Rewrite"/> changes the graph (through the <see cref="Graph"/> mutation API,
/// which keeps the bookkeeping). A non-null check result is the reason the rule declined.
/// </summary>
public sealed record RewriteRule(string Name, OpPattern Pattern, Func<Match, string?> Check, Action<Match, Graph> Rewrite);

/// <summary>Applies rules to every node of every graph until none fires (each rule must make
/// progress, e.g. remove the node it matched). Declined matches are reported with their reason.</summary>
public sealed class RewriteRulesPass(string name, IReadOnlyList<RewriteRule> rules) : IPass
{
    private const int MaxRounds = 16;

    public string Name => name;
    public IReadOnlyList<RewriteRule> Rules => rules;

    public PassResult Run(Model model, PassContext context)
    {
        var applied = rules.ToDictionary(r => r.Name, _ => 0);
        var declined = new HashSet<(string, Node)>();
        for (int round = 0; round < MaxRounds; round++)
        {
            bool changed = false;
            foreach (var graph in model.AllGraphs().ToList())
                foreach (var node in graph.Nodes.ToList())
                {
                    if (node.IsRemoved) continue;
                    foreach (var rule in rules)
                    {
                        var result = rule.Pattern.MatchAt(node);
                        if (!result.Success) continue;
                        if (rule.Check(result.Match!) is { } why)
                        {
                            if (declined.Add((rule.Name, node))) context.Info($"{rule.Name} declined at node '{node.Name}': {why}");
                            continue;
                        }
                        rule.Rewrite(result.Match!, graph);
                        applied[rule.Name]++;
                        changed = true;
                        break;
                    }
                }
            if (!changed) break;
        }
        foreach (var (rule, count) in applied.Where(kv => kv.Value > 0)) context.Info($"{rule}: applied {count} times");
        return new PassResult(applied.Values.Any(c => c > 0));
    }
}
