using OnnxViTQ.Analysis;
using OnnxViTQ.Ir;

namespace OnnxViTQ.PassInfra;

/// <summary>Checks the IR invariants every pass must keep: inputs defined and visible, use lists
/// consistent with node inputs, one producer per value, unique names, no cycles, imported domains.</summary>
internal static class GraphValidator
{
    public static void Validate(Model model)
    {
        var problems = new List<string>();
        foreach (var graph in model.AllGraphs())
        {
            // SSA across scopes: a subgraph must not redefine a name visible from an enclosing
            // graph (sibling subgraphs, e.g. If branches, may reuse names).
            foreach (var v in graph.Values)
                if (graph.Parent?.Lookup(v.Name) is { } outer)
                    problems.Add($"value '{v.Name}' of graph '{graph.Name}' shadows the one in enclosing graph '{outer.Graph.Name}'");
            CheckGraph(model, graph, problems);
            if (problems.Count == 0)
            {
                try { GraphTopology.TopologicalOrder(graph); }
                catch (GraphValidationException e) { problems.Add(e.Message); }
            }
        }
        if (problems.Count > 0)
            throw new GraphValidationException(problems.Count == 1 ? problems[0] : $"{problems[0]} (and {problems.Count - 1} more problems)");
    }

    private static void CheckGraph(Model model, Graph graph, List<string> problems)
    {
        foreach (var node in graph.Nodes)
        {
            if (node.OpType.Length == 0) problems.Add($"node '{node.Name}' has no op type");
            if (model.OpsetImports.All(o => NormalDomain(o.Domain) != NormalDomain(node.Domain)))
                problems.Add($"node '{node.Name}' uses domain '{node.Domain}', which the model does not import");
            for (int i = 0; i < node.Inputs.Count; i++)
            {
                var v = node.Inputs[i];
                if (v is null) continue;
                if (!v.Graph.Encloses(graph))
                    problems.Add($"node '{node.Name}' input {i} '{v.Name}' is not visible from graph '{graph.Name}'");
                else if (!ReferenceEquals(v.Graph.Lookup(v.Name), v))
                    problems.Add($"node '{node.Name}' input {i} '{v.Name}' refers to a removed value");
                if (!v.Consumers.Contains(new Use(node, i)))
                    problems.Add($"value '{v.Name}' does not list node '{node.Name}' input {i} among its uses");
                if (v.Producer is { IsRemoved: true } p)
                    problems.Add($"node '{node.Name}' reads '{v.Name}' from removed node '{p.Name}'");
            }
            for (int i = 0; i < node.Outputs.Count; i++)
                if (node.Outputs[i] is { } o && (!ReferenceEquals(o.Producer, node) || o.ProducerOutput != i))
                    problems.Add($"output {i} '{o.Name}' of node '{node.Name}' names another producer");
        }
        foreach (var v in graph.Values)
        {
            foreach (var use in v.Consumers)
                if (use.Node.IsRemoved || use.Node.Input(use.InputIndex) != v)
                    problems.Add($"value '{v.Name}' lists a stale use by node '{use.Node.Name}' input {use.InputIndex}");
            if (v.Producer is null && !v.IsInitializer && !v.IsGraphInput)
                problems.Add($"value '{v.Name}' has no producer and is neither an input nor an initializer");
        }
        foreach (var o in graph.Outputs)
            if (!o.Graph.Encloses(graph) || !ReferenceEquals(o.Graph.Lookup(o.Name), o))
                problems.Add($"graph '{graph.Name}' output '{o.Name}' is not defined");
    }

    private static string NormalDomain(string d) => d == "ai.onnx" ? "" : d;
}
