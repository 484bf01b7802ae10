using OnnxViTQ.Quantization;
using OnnxViTQ.Ir;
using OnnxViTQ.Passes.Analysis;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>
/// Recipe pass <c>fuse-native-gelu</c> (opt-in, after the emitter; not part of <c>--format native</c>
/// because ONNX Runtime's own Gelu after the op measured as fast or faster than the epilogue on the
/// DeiT-Tiny fc1 shapes, fused 0.84–1.00× on the three CPUs measured, BENCHMARKS.md "Fusions"): a
/// <c>com.onnxvitq.QuantizedLinear</c> whose output is read only by an exact GELU — the
/// exporter's x·½(1 + erf(x/√2)) nodes, or a <c>Gelu</c> op computing that form — gets
/// <c>epilogue = "gelu"</c> and takes the GELU's place: the MLP's fc1 then writes GELU(Y) while
/// its output tile is still in cache, instead of ONNX Runtime running a second op over Y.
/// Tanh-form and sigmoid GELUs are left alone (the epilogue computes the erf form).
/// </summary>
internal sealed class FuseNativeGelu : IPass
{
    public string Name => "fuse-native-gelu";
    public PassContract Contract { get; } = new([Stages.NativeLinears, Stages.PortableEmitted], []);

    public PassResult Run(Model model, PassContext context)
    {
        var graph = model.Graph;
        int fused = 0;
        foreach (var node in graph.Nodes.ToList())
        {
            if (node.IsRemoved || !ViTPatterns.IsGelu(node, out var x)) continue;
            if (x.Producer is not { OpType: NativeLinearLowering.OpType, Domain: NativeOps.Domain } linear) continue;
            if (linear.Attribute("epilogue") is not null || x.IsGraphOutput) continue;
            if (ErfGeluNodes(node, x) is not { } nodes) continue;
            linear.SetAttribute(AttributeValue.String("epilogue", "gelu"));
            NodeReplacement.Replace(graph, node.Output(), x, nodes);
            fused++;
        }
        context.Info($"{fused} GELU(s) fused into the preceding {NativeOps.Domain}.{NativeLinearLowering.OpType}");
        return new PassResult(fused > 0);
    }

    /// <summary>The nodes that compute the GELU <paramref name="output"/> from <paramref name="x"/>,
    /// when it is the erf form and nothing outside them reads <paramref name="x"/> or an intermediate
    /// value; else null.</summary>
    private static List<Node>? ErfGeluNodes(Node output, Value x)
    {
        if (output.OpType == "Gelu")
        {
            bool exact = (output.Domain is "" or "com.microsoft") && output.Inputs.Count == 1
                && (output.Attribute("approximate")?.AsString() ?? "none") == "none";
            return exact && x.Consumers.Count == 1 ? [output] : null;
        }
        var nodes = new List<Node>();
        var pending = new Stack<Value>(output.Inputs.OfType<Value>());
        nodes.Add(output);
        while (pending.Count > 0)
        {
            var v = pending.Pop();
            if (ReferenceEquals(v, x) || Constants.TryGetTensor(v, out _)) continue;
            if (v.Producer is not { } p || v.IsGraphOutput) return null;
            if (nodes.Contains(p)) continue;
            nodes.Add(p);
            foreach (var i in p.Inputs.OfType<Value>()) pending.Push(i);
        }
        if (!nodes.Any(n => n.OpType == "Erf")) return null;
        bool closed = x.Consumers.All(c => nodes.Contains(c.Node))
            && nodes.Where(n => n != output).All(n => n.Outputs.All(o => o is null || o.Consumers.All(c => nodes.Contains(c.Node))));
        return closed ? nodes : null;
    }
}
