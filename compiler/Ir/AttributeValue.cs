using System.Text;

namespace OnnxViTQ.Ir;

/// <summary>Attribute kinds; numeric values equal <c>AttributeProto.AttributeType</c>.</summary>
internal enum AttributeKind
{
    Undefined = 0,
    Float = 1,
    Int = 2,
    String = 3,
    Tensor = 4,
    Graph = 5,
    SparseTensor = 11,
    TypeProto = 13,
    Floats = 6,
    Ints = 7,
    Strings = 8,
    Tensors = 9,
    Graphs = 10,
    SparseTensors = 12,
    TypeProtos = 14,
}

/// <summary>
/// A node attribute. Kinds the IR models (scalars, lists, tensors, graphs) carry a typed payload;
/// sparse tensors and type protos stay in <see cref="Origin"/> and round-trip unchanged.
/// </summary>
internal sealed class AttributeValue
{
    private AttributeValue(string name, AttributeKind kind, object? payload)
    {
        Name = name;
        Kind = kind;
        Payload = payload;
    }

    public string Name { get; }
    public AttributeKind Kind { get; }
    internal object? Payload { get; }

    /// <summary>The source AttributeProto (doc string, ref_attr_name, unmodelled payloads); owned by the reader/writer.</summary>
    internal object? Origin { get; set; }

    public static AttributeValue Float(string name, float value) => new(name, AttributeKind.Float, value);
    public static AttributeValue Int(string name, long value) => new(name, AttributeKind.Int, value);
    public static AttributeValue String(string name, string value) => new(name, AttributeKind.String, Encoding.UTF8.GetBytes(value));
    public static AttributeValue Bytes(string name, byte[] value) => new(name, AttributeKind.String, value);
    public static AttributeValue Tensor(string name, Tensor value) => new(name, AttributeKind.Tensor, value);
    public static AttributeValue Graph(string name, Graph value) => new(name, AttributeKind.Graph, value);
    public static AttributeValue Floats(string name, IEnumerable<float> values) => new(name, AttributeKind.Floats, values.ToArray());
    public static AttributeValue Ints(string name, IEnumerable<long> values) => new(name, AttributeKind.Ints, values.ToArray());
    public static AttributeValue Strings(string name, IEnumerable<byte[]> values) => new(name, AttributeKind.Strings, values.ToArray());
    public static AttributeValue Tensors(string name, IEnumerable<Tensor> values) => new(name, AttributeKind.Tensors, values.ToArray());
    public static AttributeValue Graphs(string name, IEnumerable<Graph> values) => new(name, AttributeKind.Graphs, values.ToArray());

    /// <summary>An attribute whose payload the IR does not model; only the reader creates these.</summary>
    internal static AttributeValue Opaque(string name, AttributeKind kind, object origin) => new(name, kind, null) { Origin = origin };

    public float AsFloat() => Expect<float>(AttributeKind.Float);
    public long AsInt() => Expect<long>(AttributeKind.Int);
    public byte[] AsBytes() => Expect<byte[]>(AttributeKind.String);
    public string AsString() => Encoding.UTF8.GetString(AsBytes());
    public Tensor AsTensor() => Expect<Tensor>(AttributeKind.Tensor);
    public Graph AsGraph() => Expect<Graph>(AttributeKind.Graph);
    public IReadOnlyList<float> AsFloats() => Expect<float[]>(AttributeKind.Floats);
    public IReadOnlyList<long> AsInts() => Expect<long[]>(AttributeKind.Ints);
    public IReadOnlyList<byte[]> AsStrings() => Expect<byte[][]>(AttributeKind.Strings);
    public IReadOnlyList<Tensor> AsTensors() => Expect<Tensor[]>(AttributeKind.Tensors);
    public IReadOnlyList<Graph> AsGraphs() => Expect<Graph[]>(AttributeKind.Graphs);

    /// <summary>Subgraphs held by this attribute (none for non-graph kinds).</summary>
    public IEnumerable<Graph> Subgraphs => Kind switch
    {
        AttributeKind.Graph => [AsGraph()],
        AttributeKind.Graphs => AsGraphs(),
        _ => [],
    };

    private T Expect<T>(AttributeKind kind)
    {
        if (Kind != kind) throw new InvalidOperationException($"attribute '{Name}' is {Kind}, not {kind}");
        return (T)Payload!;
    }

    public override string ToString() => Kind switch
    {
        AttributeKind.Float => $"{Name}={AsFloat()}",
        AttributeKind.Int => $"{Name}={AsInt()}",
        AttributeKind.String => $"{Name}=\"{AsString()}\"",
        AttributeKind.Ints => $"{Name}=[{string.Join(",", AsInts())}]",
        AttributeKind.Floats => $"{Name}=[{string.Join(",", AsFloats())}]",
        AttributeKind.Tensor => $"{Name}={AsTensor()}",
        _ => $"{Name}=<{Kind}>",
    };
}
