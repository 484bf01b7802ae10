using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;

namespace OnnxViTQ.Patterns;

/// <summary>
/// A declarative rewrite: where <see cref="Pattern"/> matches, the captures named in
/// <see cref="SingleUse"/> have no other readers, and <see cref="Check"/> returns null,
/// <see cref="Rewrite"/> builds the replacement through a <see cref="Rewriter"/>. A non-null
/// check result is the reason the rule declined. New nodes may only use the default domain or
/// a domain in <see cref="Opsets"/>, which the framework then imports into the model.
/// </summary>
internal sealed record RewriteRule(string Name, OpPattern Pattern, Func<Match, string?> Check, Action<Match, Rewriter> Rewrite)
{
    /// <summary>Captured values (or nodes: all their outputs) the rewrite consumes: each must be
    /// read exactly once (by the matched subgraph) and not be a graph output.</summary>
    public IReadOnlyList<string> SingleUse { get; init; } = [];

    /// <summary>Operator sets the replacement nodes need, e.g. a custom domain.</summary>
    public IReadOnlyList<OpsetImport> Opsets { get; init; } = [];

    /// <summary>Why the match's intermediate values cannot be replaced, or null.</summary>
    public string? CheckSingleUse(Match m)
    {
        foreach (var capture in SingleUse)
        {
            IEnumerable<Value> values = m.Values.TryGetValue(capture, out var v) ? [v]
                : m.Nodes.TryGetValue(capture, out var n) ? n.Outputs.OfType<Value>()
                : throw new InvalidOperationException($"rule '{Name}' declares single-use capture '{capture}', which its pattern does not capture");
            foreach (var value in values)
            {
                if (value.IsGraphOutput) return $"'{value.Name}' is a graph output";
                if (value.Consumers.Count != 1) return $"'{value.Name}' has {value.Consumers.Count} uses";
            }
        }
        return null;
    }
}

/// <summary>
/// The one object through which rewrite rules change a graph: new nodes and constants, use
/// replacement and removal of what became dead. It records the domains new nodes use, so the
/// framework can import them.
/// </summary>
internal sealed class Rewriter(Model model, Graph graph, Node anchor)
{
    private readonly HashSet<string> _domains = [];

    public Model Model => model;
    public Graph Graph => graph;

    /// <summary>Domains of the nodes added so far.</summary>
    public IReadOnlyCollection<string> Domains => _domains;

    /// <summary>A node placed before the matched root (so it precedes the root's readers).</summary>
    public Node AddNode(string opType, IEnumerable<Value?> inputs, IEnumerable<string> outputNames,
        IEnumerable<AttributeValue>? attributes = null, string domain = "", string? name = null)
    {
        if (domain is not ("" or "ai.onnx")) _domains.Add(domain);
        return graph.AddNode(opType, inputs, outputNames, attributes, domain, name, before: anchor);
    }

    public Value AddConstant(string nameHint, Tensor tensor) => graph.AddInitializer(graph.UniqueName(nameHint), tensor);

    /// <summary>Points every reader of <paramref name="old"/> at <paramref name="replacement"/>
    /// (rules decline where <paramref name="old"/> is a graph output).</summary>
    public void Replace(Value old, Value replacement)
    {
        if (old.IsGraphOutput) throw new InvalidOperationException($"cannot replace graph output '{old.Name}' (its name is the model's interface)");
        old.ReplaceUsesWith(replacement);
    }

    /// <summary>Removes <paramref name="node"/> and then every producer (within the graph) left
    /// without readers, walking upwards; constants left unused go too.</summary>
    public void RemoveDead(Node node)
    {
        var pending = new Stack<Node>();
        pending.Push(node);
        while (pending.Count > 0)
        {
            var n = pending.Pop();
            if (n.IsRemoved || n.Outputs.Any(o => o is not null && (o.Consumers.Count > 0 || o.IsGraphOutput))) continue;
            var inputs = n.Inputs.OfType<Value>().Distinct().ToList();
            graph.RemoveNode(n);
            foreach (var v in inputs)
            {
                if (v.Producer is { } p && ReferenceEquals(p.Graph, graph)) pending.Push(p);
                else DropIfUnused(v);
            }
        }
    }

    /// <summary>An initializer nothing reads any more is removed.</summary>
    public static void DropIfUnused(Value constant)
    {
        if (constant.Consumers.Count > 0 || constant.IsGraphOutput || constant.IsGraphInput) return;
        if (constant.IsInitializer) constant.Graph.RemoveInitializer(constant);
        else if (constant.Producer is { OpType: "Constant" } producer && !producer.IsRemoved && producer.Outputs.All(o => o is null || o.Consumers.Count == 0))
            producer.Graph.RemoveNode(producer);
    }
}

/// <summary>Applies rules to every node of every graph until none fires (each rule must make
/// progress, e.g. remove the node it matched). Declined matches are reported with their reason.
/// Rules that keep firing past <see cref="MaxRounds"/> rounds are a bug in a rule: the pass fails
/// rather than stopping silently with a half-rewritten graph.</summary>
internal sealed class RewriteRulesPass(string name, IReadOnlyList<RewriteRule> rules, PassContract? contract = null) : IPass
{
    public const int MaxRounds = 64;

    public string Name => name;
    public PassContract Contract { get; } = contract ?? PassContract.Anywhere;
    public IReadOnlyList<RewriteRule> Rules => rules;

    public PassResult Run(Model model, PassContext context)
    {
        var applied = rules.ToDictionary(r => r.Name, _ => 0);
        var declined = new HashSet<(string, Node)>();
        for (int round = 0; ; round++)
        {
            if (round == MaxRounds)
                throw new InvalidOperationException($"rewrite rules did not converge after {MaxRounds} rounds ({string.Join(", ", applied.Where(kv => kv.Value > 0).Select(kv => $"{kv.Key} ×{kv.Value}"))})");
            bool changed = false;
            foreach (var graph in model.AllGraphs().ToList())
                foreach (var node in graph.Nodes.ToList())
                {
                    if (node.IsRemoved) continue;
                    foreach (var rule in rules)
                    {
                        var result = rule.Pattern.MatchAt(node);
                        if (!result.Success) continue;
                        if ((rule.CheckSingleUse(result.Match!) ?? rule.Check(result.Match!)) is { } why)
                        {
                            if (declined.Add((rule.Name, node))) context.Info($"{rule.Name} declined at node '{node.Name}': {why}");
                            continue;
                        }
                        var rewriter = new Rewriter(model, graph, node);
                        rule.Rewrite(result.Match!, rewriter);
                        ImportDomains(model, rule, rewriter.Domains);
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

    private static void ImportDomains(Model model, RewriteRule rule, IEnumerable<string> domains)
    {
        foreach (var domain in domains)
        {
            var opset = rule.Opsets.FirstOrDefault(o => o.Domain == domain)
                ?? throw new InvalidOperationException($"rule '{rule.Name}' added a node in domain '{domain}' without declaring its opset");
            long have = model.OpsetVersion(domain);
            if (have == 0) model.OpsetImports.Add(opset);
            else if (have < opset.Version)
            {
                model.OpsetImports.RemoveAll(o => o.Domain == domain);
                model.OpsetImports.Add(opset);
            }
        }
    }
}
