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
internal sealed record RewriteRule(string Name, OpPattern Pattern, Func<Match, string?> Check, Action<Match, Rewriter> Rewrite) : IRewriteRule
{
    public RuleAttempt Try(Model model, Node node, PassContext context)
    {
        var result = Pattern.MatchAt(node);
        if (!result.Success) return RuleAttempt.NotHere;
        return (CheckSingleUse(result.Match!) ?? Check(result.Match!)) is { } why ? RuleAttempt.Decline(why) : RuleAttempt.Matched(result.Match!);
    }

    public void Apply(object match, Rewriter rewriter) => Rewrite((Match)match, rewriter);

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

/// <summary>What trying a rule at a node found: nothing, a match to rewrite, or a match the rule
/// declines (with the reason, reported once per node).</summary>
internal readonly record struct RuleAttempt(object? Match, string? Declined)
{
    public static RuleAttempt NotHere => default;
    public static RuleAttempt Matched(object match) => new(match, null);
    public static RuleAttempt Decline(string why, object? match = null) => new(match, why);
    public bool IsMatch => Match is not null && Declined is null;
}

/// <summary>
/// A rewrite applied by <see cref="RewriteRulesPass"/>: where <see cref="Try"/> finds a match at a
/// node, <see cref="Apply"/> rewrites it through a <see cref="Rewriter"/>. Pattern rules
/// (<see cref="RewriteRule"/>) and rules that match by code and read the pass context
/// (<see cref="MatchRule{T}"/>: lowerings and fusions, which read the quantization plan) are both.
/// </summary>
internal interface IRewriteRule
{
    string Name { get; }

    /// <summary>Operator sets the replacement nodes may use; the pass imports the ones they do use.</summary>
    IReadOnlyList<OpsetImport> Opsets { get; }

    RuleAttempt Try(Model model, Node node, PassContext context);
    void Apply(object match, Rewriter rewriter);

    /// <summary>Called once for each node where the rule declined (e.g. to note the reason in a plan).</summary>
    void Declined(RuleAttempt attempt, PassContext context) { }
}

/// <summary>
/// A rule that matches by code: <see cref="Match"/> returns the match at a node (or declines it
/// with a reason, or finds nothing), <see cref="Rewrite"/> applies it. <see cref="OnDeclined"/>
/// sees each declined match once.
/// </summary>
internal sealed record MatchRule<T>(string Name, Func<Model, Node, PassContext, RuleAttempt> Match, Action<T, Rewriter> Rewrite) : IRewriteRule where T : class
{
    public IReadOnlyList<OpsetImport> Opsets { get; init; } = [];
    public Action<T?, string, PassContext>? OnDeclined { get; init; }

    public RuleAttempt Try(Model model, Node node, PassContext context) => Match(model, node, context);
    public void Apply(object match, Rewriter rewriter) => Rewrite((T)match, rewriter);
    public void Declined(RuleAttempt attempt, PassContext context) => OnDeclined?.Invoke(attempt.Match as T, attempt.Declined!, context);
}

/// <summary>
/// The one object through which rewrite rules change a graph: new nodes and constants, use
/// replacement and removal of what became dead. It records the domains new nodes use, so the
/// framework can import them.
/// </summary>
internal sealed class Rewriter(Model model, Graph graph, Node anchor, PassContext? context = null)
{
    private readonly HashSet<string> _domains = [];

    public Model Model => model;
    public Graph Graph => graph;

    /// <summary>The pass context (plan-aware rules read and update the quantization plan through it).</summary>
    public PassContext Context => context ?? throw new InvalidOperationException("this rewriter has no pass context");

    /// <summary>Domains of the nodes added so far.</summary>
    public IReadOnlyCollection<string> Domains => _domains;

    /// <summary>A node placed before the matched root (so it precedes the root's readers), or before
    /// <paramref name="before"/> when a rule needs it earlier.</summary>
    public Node AddNode(string opType, IEnumerable<Value?> inputs, IEnumerable<string> outputNames,
        IEnumerable<AttributeValue>? attributes = null, string domain = "", string? name = null, Node? before = null)
    {
        if (domain is not ("" or "ai.onnx")) _domains.Add(domain);
        return graph.AddNode(opType, inputs, outputNames, attributes, domain, name, before: before ?? anchor);
    }

    /// <summary>Puts <paramref name="replacement"/> in the place of <paramref name="old"/>: every
    /// reader and a graph output move to it (the graph output keeping its name, the model's
    /// interface), and the nodes it replaces are removed.</summary>
    public void ReplaceOutput(Value old, Value replacement, IReadOnlyList<Node> replaced)
    {
        replacement.Type = old.Type;
        old.ReplaceUsesWith(replacement);
        string? outputName = old.IsGraphOutput ? old.Name : null;
        if (outputName is not null) graph.ReplaceOutput(old, replacement);
        foreach (var node in replaced) graph.RemoveNode(node);
        if (outputName is not null) graph.Rename(replacement, outputName);
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

/// <summary>What a rule pass did: how often each rule applied, and the declined matches (node and reason).</summary>
internal sealed record RewriteSummary(IReadOnlyDictionary<string, int> Applied, IReadOnlyList<(string Rule, Node Node, string Reason)> Declined)
{
    public int Total => Applied.Values.Sum();
}

/// <summary>Applies rules to every node of every graph until none fires (each rule must make
/// progress, e.g. remove the node it matched). Declined matches are reported once per node with
/// their reason (or summed up by <see cref="Summary"/>). Rules that keep firing past
/// <see cref="MaxRounds"/> rounds are a bug in a rule: the pass fails rather than stopping
/// silently with a half-rewritten graph.</summary>
internal sealed class RewriteRulesPass(string name, IReadOnlyList<IRewriteRule> rules, PassContract? contract = null) : IPass
{
    public const int MaxRounds = 64;

    public string Name => name;
    public PassContract Contract { get; } = contract ?? PassContract.Anywhere;
    public IReadOnlyList<IRewriteRule> Rules => rules;

    /// <summary>The pass's one message, in place of a line per rule and per declined node (null: none).</summary>
    public Func<RewriteSummary, string?>? Summary { get; init; }

    public PassResult Run(Model model, PassContext context)
    {
        var applied = rules.ToDictionary(r => r.Name, _ => 0);
        var declined = new List<(string, Node, string)>();
        var seen = new HashSet<(string, Node)>();
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
                        var attempt = rule.Try(model, node, context);
                        if (attempt.Declined is { } why)
                        {
                            if (seen.Add((rule.Name, node)))
                            {
                                declined.Add((rule.Name, node, why));
                                rule.Declined(attempt, context);
                                if (Summary is null) context.Info($"{rule.Name} declined at node '{node.Name}': {why}");
                            }
                            continue;
                        }
                        if (!attempt.IsMatch) continue;
                        var rewriter = new Rewriter(model, graph, node, context);
                        rule.Apply(attempt.Match!, rewriter);
                        ImportDomains(model, rule, rewriter.Domains);
                        applied[rule.Name]++;
                        changed = true;
                        break;
                    }
                }
            if (!changed) break;
        }
        if (Summary is not null)
        {
            if (Summary(new RewriteSummary(applied, declined)) is { } message) context.Info(message);
        }
        else
            foreach (var (rule, count) in applied.Where(kv => kv.Value > 0)) context.Info($"{rule}: applied {count} times");
        return new PassResult(applied.Values.Any(c => c > 0));
    }

    private static void ImportDomains(Model model, IRewriteRule rule, IEnumerable<string> domains)
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
