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
/// DeiT-Tiny fc1 shapes, BENCHMARKS.md "Fusions"): a
/// <c>com.onnxvitq.QuantizedLinear</c> whose output is read only by an exact GELU — the
/// exporter's x·½(1 + erf(x/√2)) nodes, or a <c>Gelu</c> op computing that form — gets
/// <c>epilogue = "gelu"</c> and takes the GELU's place: the MLP's fc1 then writes GELU(Y) while
/// its output tile is still in cache, instead of ONNX Runtime running a second op over Y.
/// Tanh-form and sigmoid GELUs are left alone (the epilogue computes the erf form).
/// </summary>
internal static class FuseNativeGelu
{
    private sealed record Fusion(Node Gelu, Node Linear, Value X, List<Node> Nodes);

    public static RewriteRulesPass Pass()
    {
        var rule = new MatchRule<Fusion>("fuse-native-gelu", (_, node, _) => Match(node), Fuse);
        return new RewriteRulesPass("fuse-native-gelu", [rule], new PassContract([Stages.NativeLinears, Stages.PortableEmitted], []))
        {
            Summary = done => $"{done.Total} GELU(s) fused into the preceding {NativeOps.Domain}.{NativeLinearLowering.OpType}",
        };
    }

    private static RuleAttempt Match(Node node)
    {
        if (!ViTPatterns.IsGelu(node, out var x)) return RuleAttempt.NotHere;
        if (x.Producer is not { OpType: NativeLinearLowering.OpType, Domain: NativeOps.Domain } linear) return RuleAttempt.NotHere;
        if (linear.Attribute("epilogue") is not null || x.IsGraphOutput) return RuleAttempt.NotHere;
        return ErfGeluNodes(node, x) is { } nodes ? RuleAttempt.Matched(new Fusion(node, linear, x, nodes)) : RuleAttempt.NotHere;
    }

    private static void Fuse(Fusion f, Rewriter r)
    {
        f.Linear.SetAttribute(NativeOpSchemas.QuantizedLinear.String("epilogue", "gelu"));
        r.ReplaceOutput(f.Gelu.Output(), f.X, f.Nodes);
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
