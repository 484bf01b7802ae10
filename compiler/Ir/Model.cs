namespace OnnxViTQ.Ir;

/// <summary>An operator set a model imports; domain "" is the default ONNX domain.</summary>
internal sealed record OpsetImport(string Domain, long Version);

/// <summary>A model: the main graph plus the model-level fields passes need. Everything else
/// in the file (producer, functions, training info, unknown fields) is kept verbatim.</summary>
internal sealed class Model
{
    public Model(Graph graph, long irVersion, IEnumerable<OpsetImport> opsets)
    {
        Graph = graph;
        IrVersion = irVersion;
        OpsetImports = opsets.ToList();
    }

    public Graph Graph { get; private set; }

    /// <summary>Takes <paramref name="other"/>'s graph, IR version, opsets and metadata: a search that
    /// quantized copies of this model keeps the one it chose.</summary>
    public void TakeContentsOf(Model other)
    {
        Graph = other.Graph;
        IrVersion = other.IrVersion;
        OpsetImports.Clear();
        OpsetImports.AddRange(other.OpsetImports);
        Metadata.Clear();
        Metadata.AddRange(other.Metadata);
    }
    public long IrVersion { get; set; }
    public List<OpsetImport> OpsetImports { get; }

    /// <summary>metadata_props, in file order.</summary>
    public List<KeyValuePair<string, string>> Metadata { get; } = [];

    /// <summary>Source ModelProto minus the modelled fields; owned by the reader/writer.</summary>
    internal object? Origin { get; set; }

    /// <summary>Producer name recorded in the file, if any (read only; for reports).</summary>
    public string ProducerName { get; internal set; } = "";

    /// <summary>Version of the default ONNX operator set (0 if not imported).</summary>
    public long DefaultOpset => OpsetVersion("");

    public long OpsetVersion(string domain)
    {
        string d = domain == "ai.onnx" ? "" : domain;
        return OpsetImports.FirstOrDefault(o => (o.Domain == "ai.onnx" ? "" : o.Domain) == d)?.Version ?? 0;
    }

    public string? GetMetadata(string key) => Metadata.LastOrDefault(kv => kv.Key == key).Value;

    public void SetMetadata(string key, string value)
    {
        Metadata.RemoveAll(kv => kv.Key == key);
        Metadata.Add(new(key, value));
    }

    /// <summary>Every graph in the model: the main graph and all nested subgraphs.</summary>
    public IEnumerable<Graph> AllGraphs()
    {
        var stack = new Stack<Graph>();
        stack.Push(Graph);
        while (stack.Count > 0)
        {
            var g = stack.Pop();
            yield return g;
            foreach (var n in g.Nodes)
                foreach (var s in n.Subgraphs) stack.Push(s);
        }
    }
}
