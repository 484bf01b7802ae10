namespace OnnxViTQ.Ir;

/// <summary>An operator application. Omitted optional inputs and outputs are null.</summary>
internal sealed class Node
{
    private readonly List<Value?> _inputs = [];
    private readonly List<Value?> _outputs = [];
    private readonly List<AttributeValue> _attributes = [];
    private Dictionary<string, object>? _meta;

    internal Node(Graph graph, string name, string opType, string domain)
    {
        Graph = graph;
        Name = name;
        OpType = opType;
        Domain = domain;
    }

    public Graph Graph { get; }
    public string Name { get; set; }
    public string OpType { get; }

    /// <summary>Operator domain; "" is the default ONNX domain (also written "ai.onnx").</summary>
    public string Domain { get; }

    public IReadOnlyList<Value?> Inputs => _inputs;
    public IReadOnlyList<Value?> Outputs => _outputs;
    public IReadOnlyList<AttributeValue> Attributes => _attributes;

    public IDictionary<string, object> Meta => _meta ??= new Dictionary<string, object>();

    /// <summary>Source NodeProto fields the IR does not model; owned by the reader/writer.</summary>
    internal object? Origin { get; set; }

    public bool IsRemoved { get; internal set; }

    public Value? Input(int index) => index < _inputs.Count ? _inputs[index] : null;

    public Value Output(int index = 0) =>
        (index < _outputs.Count ? _outputs[index] : null) ?? throw new InvalidOperationException($"node '{Name}' has no output {index}");

    public AttributeValue? Attribute(string name) => _attributes.FirstOrDefault(a => a.Name == name);

    public long GetInt(string name, long fallback) => Attribute(name)?.AsInt() ?? fallback;
    public float GetFloat(string name, float fallback) => Attribute(name)?.AsFloat() ?? fallback;

    public void SetAttribute(AttributeValue value)
    {
        int i = _attributes.FindIndex(a => a.Name == value.Name);
        if (i >= 0) _attributes[i] = value; else _attributes.Add(value);
        foreach (var g in value.Subgraphs) g.OwnerNode = this;
    }

    public bool RemoveAttribute(string name) => _attributes.RemoveAll(a => a.Name == name) > 0;

    /// <summary>Subgraphs of this node's graph attributes (If branches, Loop/Scan bodies).</summary>
    public IEnumerable<Graph> Subgraphs => _attributes.SelectMany(a => a.Subgraphs);

    /// <summary>Values from enclosing scopes that this node's subgraphs read: dependencies that
    /// are not in <see cref="Inputs"/> but order the node after their producers.</summary>
    public IEnumerable<Value> ImplicitInputs()
    {
        var seen = new HashSet<Value>();
        foreach (var sub in Subgraphs)
            foreach (var v in sub.OuterScopeReads())
                if (v.Graph.Encloses(Graph) && seen.Add(v))
                    yield return v;
    }

    public void SetInput(int index, Value? value)
    {
        while (_inputs.Count <= index) _inputs.Add(null);
        var old = _inputs[index];
        if (ReferenceEquals(old, value)) return;
        if (old is not null) old.UseList.Remove(new Use(this, index));
        CheckVisible(value);
        _inputs[index] = value;
        value?.UseList.Add(new Use(this, index));
    }

    public void AddInput(Value? value) => SetInput(_inputs.Count, value);

    internal void AttachOutput(Value? value)
    {
        if (value is not null)
        {
            if (value.Producer is not null) throw new InvalidOperationException($"value '{value.Name}' already has a producer");
            value.Producer = this;
            value.ProducerOutput = _outputs.Count;
        }
        _outputs.Add(value);
    }

    internal void DetachAll()
    {
        for (int i = 0; i < _inputs.Count; i++) _inputs[i]?.UseList.Remove(new Use(this, i));
        _inputs.Clear();
        foreach (var o in _outputs)
            if (o is not null) { o.Producer = null; o.ProducerOutput = -1; }
    }

    private void CheckVisible(Value? value)
    {
        if (value is not null && !value.Graph.Encloses(Graph))
            throw new InvalidOperationException($"value '{value.Name}' is not visible from node '{Name}' in graph '{Graph.Name}'");
    }

    public override string ToString() => $"{(Domain.Length > 0 ? Domain + "." : "")}{OpType} '{Name}'";
}
