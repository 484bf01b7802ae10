namespace OnnxViTQ.Ir;

/// <summary>One use of a value: input <see cref="InputIndex"/> of <see cref="Node"/>.</summary>
internal readonly record struct Use(Node Node, int InputIndex);

/// <summary>
/// A named SSA value: a graph input, an initializer (constant) or a node output. It knows its
/// producer and every use, including uses from nodes inside subgraphs of later nodes.
/// </summary>
internal sealed class Value
{
    internal readonly List<Use> UseList = [];
    private Dictionary<string, object>? _meta;

    internal Value(Graph graph, string name)
    {
        Graph = graph;
        Name = name;
    }

    /// <summary>The graph whose scope defines this value.</summary>
    public Graph Graph { get; }

    public string Name { get; internal set; }

    public Node? Producer { get; internal set; }

    /// <summary>Output index on <see cref="Producer"/>, -1 when the value has no producer.</summary>
    public int ProducerOutput { get; internal set; } = -1;

    public IReadOnlyList<Use> Consumers => UseList;

    /// <summary>The constant value of an initializer, null for everything else.</summary>
    public Tensor? Initializer { get; internal set; }

    public bool IsInitializer => Initializer is not null;
    public bool IsGraphInput { get; internal set; }
    public bool IsGraphOutput { get; internal set; }

    /// <summary>Element type and shape if known (from graph inputs/outputs, value_info or a pass).</summary>
    public TensorTypeInfo? Type { get; set; }

    /// <summary>Side store for analysis results (roles, statistics); never serialized.</summary>
    public IDictionary<string, object> Meta => _meta ??= new Dictionary<string, object>();

    /// <summary>Source ValueInfoProto (doc string, non-tensor types); owned by the reader/writer.</summary>
    internal object? Origin { get; set; }

    /// <summary>
    /// Points every use accepted by <paramref name="where"/> at <paramref name="replacement"/>.
    /// Graph outputs keep this value: their names are the model's interface.
    /// </summary>
    public void ReplaceUsesWith(Value replacement, Func<Use, bool>? where = null)
    {
        if (ReferenceEquals(replacement, this)) return;
        foreach (var use in UseList.ToArray())
            if (where is null || where(use))
                use.Node.SetInput(use.InputIndex, replacement);
    }

    public override string ToString() => Name;
}
