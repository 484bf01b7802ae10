using OnnxViTQ.Ir;

namespace OnnxViTQ.Reconstruction;

/// <summary>
/// A module (an attention or MLP block, a linear layer) cut out of a model as a model of its own:
/// every node needed to compute <c>outputs</c> from <c>inputs</c> (shape arithmetic and Constant
/// nodes included), the initializers they read copied in, the inputs as graph inputs. Values keep
/// their names, so activations captured on the whole model feed it directly, and a weight's
/// initializer here is found by its name in the model.
/// </summary>
internal sealed class ModuleGraph
{
    private ModuleGraph(Model model, IReadOnlyList<Value> inputs, IReadOnlyList<Value> outputs)
    {
        Model = model;
        Inputs = inputs;
        Outputs = outputs;
    }

    public Model Model { get; }
    public IReadOnlyList<Value> Inputs { get; }
    public IReadOnlyList<Value> Outputs { get; }

    public static ModuleGraph Extract(Model model, IReadOnlyList<Value> inputs, IReadOnlyList<Value> outputs, string name)
    {
        var stop = new HashSet<Value>(inputs);
        var needed = new HashSet<Node>();
        var pending = new Stack<Value>(outputs);
        var seen = new HashSet<Value>();
        while (pending.Count > 0)
        {
            var v = pending.Pop();
            if (!seen.Add(v) || stop.Contains(v) || v.IsInitializer) continue;
            var producer = v.Producer
                ?? throw new OnnxViTQException($"module '{name}' needs '{v.Name}', which is neither one of its inputs ({string.Join(", ", inputs.Select(i => $"'{i.Name}'"))}) nor computed from them");
            if (producer.Subgraphs.Any()) throw new OnnxViTQException($"module '{name}' contains {producer.OpType} '{producer.Name}', whose subgraphs cannot be cut out");
            if (!needed.Add(producer)) continue;
            foreach (var i in producer.Inputs) if (i is not null) pending.Push(i);
        }

        var g = new Graph(name);
        var map = new Dictionary<Value, Value>();
        // Exports carry no value_info: a cut point's type may be unknown, and ONNX Runtime needs one for a graph input.
        foreach (var input in inputs) map[input] = g.AddInput(input.Name, input.Type ?? new TensorTypeInfo(DataType.Float, null));
        Value Map(Value v)
        {
            if (map.TryGetValue(v, out var m)) return m;
            if (v.Initializer is { } t) return map[v] = g.AddInitializer(v.Name, t);
            throw new InvalidOperationException($"'{v.Name}' was not copied before its use");
        }
        foreach (var node in model.Graph.Nodes.Where(needed.Contains))  // the model's order is topological
        {
            var copy = g.AddNode(node.OpType, node.Inputs.Select(i => i is null ? null : Map(i)), node.Outputs.Select(o => o?.Name ?? ""), node.Attributes, node.Domain, node.Name);
            for (int k = 0; k < node.Outputs.Count; k++)
                if (node.Outputs[k] is { } o) map[o] = copy.Outputs[k]!;
        }
        foreach (var o in outputs)
        {
            var copied = Map(o);
            copied.Type ??= new TensorTypeInfo(DataType.Float, null);
            g.AddOutput(copied);
        }
        var cut = new Model(g, model.IrVersion, model.OpsetImports);
        return new ModuleGraph(cut, inputs.Select(i => map[i]).ToList(), outputs.Select(o => map[o]).ToList());
    }
}
