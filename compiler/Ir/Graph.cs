namespace OnnxViTQ.Ir;

/// <summary>
/// A graph: ordered nodes, inputs, outputs and initializers, plus the name scope of its values.
/// Every structural change goes through the methods here and on <see cref="Node"/>, so producer,
/// consumer and name bookkeeping lives in one place. Node order is kept as inserted; the writer
/// restores a topological order if a pass broke it.
/// </summary>
internal sealed class Graph
{
    private readonly List<Node> _nodes = [];
    private readonly List<Value> _inputs = [];
    private readonly List<Value> _outputs = [];
    private readonly List<Value> _initializers = [];
    private readonly Dictionary<string, Value> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _localNames = new(StringComparer.Ordinal);

    public Graph(string name = "main")
    {
        Name = name;
    }

    public string Name { get; set; }

    /// <summary>The node whose attribute holds this graph, null for the main graph.</summary>
    public Node? OwnerNode { get; internal set; }

    public Graph? Parent => OwnerNode?.Graph;

    public Graph Root => Parent?.Root ?? this;

    public IReadOnlyList<Node> Nodes => _nodes;
    public IReadOnlyList<Value> Inputs => _inputs;
    public IReadOnlyList<Value> Outputs => _outputs;
    public IReadOnlyList<Value> Initializers => _initializers;

    /// <summary>Source GraphProto fields the IR does not model (doc string, sparse initializers,
    /// quantization annotations); owned by the reader/writer.</summary>
    internal object? Origin { get; set; }

    /// <summary>Every value defined in this graph's own scope.</summary>
    public IEnumerable<Value> Values => _values.Values;

    /// <summary>True when <paramref name="other"/> is this graph or nested inside it.</summary>
    public bool Encloses(Graph other)
    {
        for (Graph? g = other; g is not null; g = g.Parent)
            if (ReferenceEquals(g, this)) return true;
        return false;
    }

    /// <summary>Looks a name up in this scope, then in enclosing scopes.</summary>
    public Value? Lookup(string name)
    {
        for (Graph? g = this; g is not null; g = g.Parent)
            if (g._values.TryGetValue(name, out var v)) return v;
        return null;
    }

    /// <summary>A value name not used anywhere in the model, derived from <paramref name="hint"/>.</summary>
    public string UniqueName(string hint)
    {
        var root = Root;
        if (!root.NameTaken(hint)) return hint;
        for (int i = 1; ; i++)
        {
            string candidate = $"{hint}_{i}";
            if (!root.NameTaken(candidate)) return candidate;
        }
    }

    private bool NameTaken(string name) =>
        _localNames.Contains(name) || _nodes.Any(n => n.Subgraphs.Any(s => s.NameTaken(name)));

    public Value AddInput(string name, TensorTypeInfo? type)
    {
        var v = NewValue(name);
        v.Type = type;
        v.IsGraphInput = true;
        _inputs.Add(v);
        return v;
    }

    /// <summary>Removes a graph input nothing reads any more (an input replaced by another, e.g. an
    /// image tensor computed from encoded image bytes), with its value.</summary>
    public void RemoveInput(Value input)
    {
        if (!_inputs.Contains(input) || input.IsInitializer) throw new InvalidOperationException($"'{input.Name}' is not an input of graph '{Name}'");
        if (input.Consumers.Count > 0 || input.IsGraphOutput) throw new InvalidOperationException($"input '{input.Name}' is still read");
        _inputs.Remove(input);
        input.IsGraphInput = false;
        ForgetValue(input);
    }

    /// <summary>Registers an existing initializer as a graph input too (IR &lt; 4 style overridable constant).</summary>
    internal void AddInitializerAsInput(Value initializer)
    {
        initializer.IsGraphInput = true;
        _inputs.Add(initializer);
    }

    public void AddOutput(Value value)
    {
        if (!value.Graph.Encloses(this)) throw new InvalidOperationException($"value '{value.Name}' is not visible in graph '{Name}'");
        value.IsGraphOutput = true;
        _outputs.Add(value);
    }

    public void RemoveOutput(Value value)
    {
        if (!_outputs.Remove(value)) throw new InvalidOperationException($"'{value.Name}' is not an output of graph '{Name}'");
        value.IsGraphOutput = _outputs.Contains(value);
    }

    public Value AddInitializer(string name, Tensor tensor)
    {
        var v = NewValue(name);
        v.Initializer = tensor;
        v.Type = new TensorTypeInfo(tensor.DataType, tensor.Dims.Select(Dim.Known).ToArray());
        _initializers.Add(v);
        return v;
    }

    /// <summary>Replaces the constant of an initializer in place (same name, same uses).</summary>
    public void SetInitializer(Value initializer, Tensor tensor)
    {
        if (!initializer.IsInitializer || !ReferenceEquals(initializer.Graph, this))
            throw new InvalidOperationException($"'{initializer.Name}' is not an initializer of graph '{Name}'");
        initializer.Initializer = tensor;
        initializer.Type = new TensorTypeInfo(tensor.DataType, tensor.Dims.Select(Dim.Known).ToArray());
    }

    /// <summary>Adds a node with fresh output values named after <paramref name="outputNames"/>
    /// (made unique). With <paramref name="before"/> the node is placed just before that node,
    /// otherwise at the end.</summary>
    public Node AddNode(string opType, IEnumerable<Value?> inputs, IEnumerable<string> outputNames,
        IEnumerable<AttributeValue>? attributes = null, string domain = "", string? name = null, Node? before = null)
    {
        var node = new Node(this, name ?? UniqueNodeName(opType), opType, domain);
        foreach (var input in inputs) node.AddInput(input);
        foreach (var outName in outputNames) node.AttachOutput(outName.Length == 0 ? null : NewValue(UniqueName(outName)));
        foreach (var a in attributes ?? []) node.SetAttribute(a);
        InsertNode(node, before);
        return node;
    }

    /// <summary>Reader entry point: outputs keep their exact names (they were unique in the file).</summary>
    internal Node AddNodeExact(string opType, string domain, string name, IEnumerable<string> outputNames)
    {
        var node = new Node(this, name, opType, domain);
        foreach (var outName in outputNames)
            node.AttachOutput(outName.Length == 0 ? null : NewValue(outName));
        _nodes.Add(node);
        return node;
    }

    private void InsertNode(Node node, Node? before)
    {
        if (before is null) { _nodes.Add(node); return; }
        int at = _nodes.IndexOf(before);
        if (at < 0) throw new InvalidOperationException($"node '{before.Name}' is not in graph '{Name}'");
        _nodes.Insert(at, node);
    }

    /// <summary>Removes a node whose outputs are unused (and not graph outputs).</summary>
    public void RemoveNode(Node node)
    {
        if (!ReferenceEquals(node.Graph, this) || node.IsRemoved) throw new InvalidOperationException($"node '{node.Name}' is not in graph '{Name}'");
        foreach (var o in node.Outputs)
        {
            if (o is null) continue;
            if (o.Consumers.Count > 0)
                throw new InvalidOperationException($"cannot remove node '{node.Name}': output '{o.Name}' is used by '{o.Consumers[0].Node.Name}'");
            if (o.IsGraphOutput) throw new InvalidOperationException($"cannot remove node '{node.Name}': '{o.Name}' is a graph output");
        }
        node.DetachAll();
        foreach (var o in node.Outputs) if (o is not null) ForgetValue(o);
        _nodes.Remove(node);
        node.IsRemoved = true;
    }

    /// <summary>Removes an unused initializer.</summary>
    public void RemoveInitializer(Value initializer)
    {
        if (initializer.Consumers.Count > 0 || initializer.IsGraphOutput)
            throw new InvalidOperationException($"initializer '{initializer.Name}' is still used");
        if (!_initializers.Remove(initializer)) throw new InvalidOperationException($"'{initializer.Name}' is not an initializer of graph '{Name}'");
        if (initializer.IsGraphInput) _inputs.Remove(initializer);
        ForgetValue(initializer);
    }

    /// <summary>Makes <paramref name="replacement"/> the graph output in <paramref name="old"/>'s
    /// position (the model's output order is its interface).</summary>
    public void ReplaceOutput(Value old, Value replacement)
    {
        int at = _outputs.IndexOf(old);
        if (at < 0) throw new InvalidOperationException($"'{old.Name}' is not an output of graph '{Name}'");
        if (!replacement.Graph.Encloses(this)) throw new InvalidOperationException($"value '{replacement.Name}' is not visible in graph '{Name}'");
        _outputs[at] = replacement;
        replacement.IsGraphOutput = true;
        old.IsGraphOutput = _outputs.Contains(old);
    }

    /// <summary>Renames a value of this graph to a name no value of the model has.</summary>
    public void Rename(Value value, string name)
    {
        if (!ReferenceEquals(value.Graph, this)) throw new InvalidOperationException($"'{value.Name}' is not a value of graph '{Name}'");
        if (Root.NameTaken(name)) throw new InvalidOperationException($"cannot rename '{value.Name}' to '{name}': the name is taken");
        ForgetValue(value);
        value.Name = name;
        _values.Add(name, value);
        _localNames.Add(name);
    }

    /// <summary>Values read by this graph (and its subgraphs) from enclosing scopes.</summary>
    public IEnumerable<Value> OuterScopeReads()
    {
        var seen = new HashSet<Value>();
        foreach (var node in _nodes)
        {
            foreach (var v in node.Inputs)
                if (v is not null && !Encloses(v.Graph) && seen.Add(v)) yield return v;
            foreach (var sub in node.Subgraphs)
                foreach (var v in sub.OuterScopeReads())
                    if (!Encloses(v.Graph) && seen.Add(v)) yield return v;
        }
        foreach (var v in _outputs)
            if (!Encloses(v.Graph) && seen.Add(v)) yield return v;
    }

    internal Value NewValue(string name)
    {
        if (name.Length == 0) throw new ArgumentException("value names must not be empty");
        if (_values.ContainsKey(name)) throw new InvalidOperationException($"value '{name}' is defined twice in graph '{Name}'");
        var v = new Value(this, name);
        _values.Add(name, v);
        _localNames.Add(name);
        return v;
    }

    private void ForgetValue(Value v)
    {
        _values.Remove(v.Name);
        _localNames.Remove(v.Name);
    }

    private string UniqueNodeName(string opType)
    {
        int n = _nodes.Count;
        var names = new HashSet<string>(_nodes.Select(x => x.Name), StringComparer.Ordinal);
        string candidate;
        do candidate = $"{opType}_{n++}"; while (names.Contains(candidate));
        return candidate;
    }

    public override string ToString() => $"graph '{Name}' ({_nodes.Count} nodes)";
}
