using OnnxViTQ.Ir;

namespace OnnxViTQ.Patterns;

/// <summary>
/// Declarative subgraph patterns, matched backwards from a value through producers:
/// <code>Pattern.Op("MatMul", Pattern.Any("x"), Pattern.Constant("w")).Named("matmul")</code>
/// A capture name used twice must bind the same value or node. A failed match says why not.
/// </summary>
internal abstract class Pattern
{
    public static ValuePattern Any(string? capture = null) => new(capture, ValueKind.Any);

    /// <summary>An initializer or the output of a Constant node.</summary>
    public static ValuePattern Constant(string? capture = null) => new(capture, ValueKind.Constant);

    /// <summary>A value computed at run time (not a constant).</summary>
    public static ValuePattern Dynamic(string? capture = null) => new(capture, ValueKind.Dynamic);

    public static OpPattern Op(string opType, params Pattern[] inputs) => new(opType, inputs);

    internal abstract string? TryMatch(Value? value, MatchState state);
}

internal enum ValueKind { Any, Constant, Dynamic }

internal sealed class ValuePattern : Pattern
{
    private readonly string? _capture;
    private readonly ValueKind _kind;

    internal ValuePattern(string? capture, ValueKind kind)
    {
        _capture = capture;
        _kind = kind;
    }

    internal override string? TryMatch(Value? value, MatchState state)
    {
        if (value is null) return "input is absent";
        bool isConst = Constants.TryGetTensor(value, out _);
        if (_kind == ValueKind.Constant && !isConst) return $"'{value.Name}' is not a constant";
        if (_kind == ValueKind.Dynamic && isConst) return $"'{value.Name}' is a constant";
        return _capture is null ? null : state.Bind(_capture, value);
    }
}

internal sealed class OpPattern : Pattern
{
    private readonly string _opType;
    private readonly Pattern[] _inputs;
    private readonly List<(Func<Node, bool> Check, string Reason)> _checks = [];
    private string _domain = "";
    private string? _capture;
    private bool _commutative;

    internal OpPattern(string opType, Pattern[] inputs)
    {
        _opType = opType;
        _inputs = inputs;
    }

    /// <summary>Captures the matched node under <paramref name="capture"/>.</summary>
    public OpPattern Named(string capture) { _capture = capture; return this; }

    public OpPattern InDomain(string domain) { _domain = domain; return this; }

    /// <summary>For two-input ops: also try the inputs swapped.</summary>
    public OpPattern Commutative() { _commutative = true; return this; }

    /// <summary>Adds a condition; <paramref name="reason"/> is reported when it fails.</summary>
    public OpPattern Where(Func<Node, bool> check, string reason) { _checks.Add((check, reason)); return this; }

    /// <summary>Matches with <paramref name="node"/> as the pattern's root.</summary>
    public MatchResult MatchAt(Node node)
    {
        var state = new MatchState();
        var why = MatchNode(node, state);
        return why is null ? new MatchResult(state.ToMatch(node), null) : new MatchResult(null, why);
    }

    internal override string? TryMatch(Value? value, MatchState state)
    {
        if (value is null) return "input is absent";
        if (value.Producer is not { } producer) return $"'{value.Name}' is not produced by a {_opType} node";
        return MatchNode(producer, state);
    }

    private string? MatchNode(Node node, MatchState state)
    {
        if (node.OpType != _opType || NormalDomain(node.Domain) != NormalDomain(_domain))
            return $"node '{node.Name}' is {node.OpType}, not {_opType}";
        if (node.Inputs.Count < _inputs.Length)
            return $"node '{node.Name}' has {node.Inputs.Count} inputs, pattern needs {_inputs.Length}";
        foreach (var (check, reason) in _checks)
            if (!check(node)) return $"node '{node.Name}': {reason}";

        var snapshot = state.Save();
        var why = MatchInputs(node, state, swapped: false);
        if (why is not null && _commutative && _inputs.Length == 2)
        {
            state.Restore(snapshot);
            why = MatchInputs(node, state, swapped: true) is null ? null : why;
        }
        if (why is not null) { state.Restore(snapshot); return why; }
        return _capture is null ? null : state.Bind(_capture, node);
    }

    private string? MatchInputs(Node node, MatchState state, bool swapped)
    {
        for (int i = 0; i < _inputs.Length; i++)
        {
            int j = swapped ? 1 - i : i;
            if (_inputs[i].TryMatch(node.Inputs[j], state) is { } why) return why;
        }
        return null;
    }

    private static string NormalDomain(string d) => d == "ai.onnx" ? "" : d;
}

/// <summary>Outcome of matching: the <see cref="Match"/>, or the <see cref="Reason"/> it failed.</summary>
internal readonly record struct MatchResult(Match? Match, string? Reason)
{
    public bool Success => Match is not null;
}

/// <summary>Captured nodes and values of a successful match.</summary>
internal sealed class Match(Node root, IReadOnlyDictionary<string, Node> nodes, IReadOnlyDictionary<string, Value> values)
{
    public Node Root { get; } = root;
    public IReadOnlyDictionary<string, Node> Nodes { get; } = nodes;
    public IReadOnlyDictionary<string, Value> Values { get; } = values;

    public Node Node(string capture) => Nodes.TryGetValue(capture, out var n) ? n : throw new KeyNotFoundException($"no node captured as '{capture}'");
    public Value Value(string capture) => Values.TryGetValue(capture, out var v) ? v : throw new KeyNotFoundException($"no value captured as '{capture}'");
}

internal sealed class MatchState
{
    private Dictionary<string, Node> _nodes = [];
    private Dictionary<string, Value> _values = [];

    public string? Bind(string name, Value v)
    {
        if (_values.TryGetValue(name, out var bound) && !ReferenceEquals(bound, v))
            return $"'{name}' is bound to '{bound.Name}', not '{v.Name}'";
        _values[name] = v;
        return null;
    }

    public string? Bind(string name, Node n)
    {
        if (_nodes.TryGetValue(name, out var bound) && !ReferenceEquals(bound, n))
            return $"'{name}' is bound to node '{bound.Name}', not '{n.Name}'";
        _nodes[name] = n;
        return null;
    }

    public (Dictionary<string, Node>, Dictionary<string, Value>) Save() => (new(_nodes), new(_values));

    public void Restore((Dictionary<string, Node> Nodes, Dictionary<string, Value> Values) s)
    {
        _nodes = new(s.Nodes);
        _values = new(s.Values);
    }

    public Match ToMatch(Node root) => new(root, _nodes, _values);
}

internal static class PatternMatcher
{
    /// <summary>Every node of <paramref name="graph"/> (in order) where <paramref name="pattern"/> matches.</summary>
    public static IReadOnlyList<Match> FindAll(Graph graph, OpPattern pattern) =>
        graph.Nodes.Select(pattern.MatchAt).Where(r => r.Success).Select(r => r.Match!).ToList();
}
