using System.Text;

namespace OnnxViTQ.Ir;

/// <summary>A compact text form of a graph, one line per node, for golden tests and debugging:
/// <code>%y = MatMul(%x, %w)  {alpha=1}</code></summary>
internal static class GraphPrinter
{
    public static string Print(Graph graph)
    {
        var sb = new StringBuilder();
        foreach (var v in graph.Inputs) sb.AppendLine($"input %{v.Name}: {v.Type?.ToString() ?? "?"}");
        foreach (var n in graph.Nodes)
        {
            string outs = string.Join(", ", n.Outputs.Select(o => o is null ? "_" : "%" + o.Name));
            string ins = string.Join(", ", n.Inputs.Select(i => i is null ? "_" : "%" + i.Name));
            string op = n.Domain.Length > 0 ? $"{n.Domain}.{n.OpType}" : n.OpType;
            var attrs = n.Attributes.Where(a => a.Kind != AttributeKind.Graph && a.Kind != AttributeKind.Graphs).ToList();
            sb.Append($"{outs} = {op}({ins})");
            if (attrs.Count > 0) sb.Append($"  {{{string.Join(", ", attrs)}}}");
            sb.AppendLine();
        }
        foreach (var v in graph.Outputs) sb.AppendLine($"output %{v.Name}");
        return sb.ToString();
    }
}
