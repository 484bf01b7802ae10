using OnnxViTQ.Ir;
using QuikGraph;
using QuikGraph.Algorithms;

namespace OnnxViTQ.Analysis;

/// <summary>Dependency-graph views of an IR graph, built on QuikGraph.</summary>
internal static class GraphTopology
{
    /// <summary>The node list in topological order: the graph's own order when it already is one
    /// (so an untouched model is written back in file order), otherwise a QuikGraph sort.</summary>
    public static IReadOnlyList<Node> TopologicalOrder(Graph graph)
    {
        if (IsTopologicallyOrdered(graph)) return graph.Nodes;
        var dag = DependencyGraph(graph);
        try
        {
            return dag.SourceFirstTopologicalSort().ToList();
        }
        catch (NonAcyclicGraphException)
        {
            // a node on a cycle: one whose strongly connected component has more than one node
            var component = new Dictionary<Node, int>();
            dag.StronglyConnectedComponents(component);
            var sizes = component.Values.GroupBy(c => c).ToDictionary(g => g.Key, g => g.Count());
            // (or a node that reads its own output: a component of one)
            var stuck = graph.Nodes.FirstOrDefault(n => sizes[component[n]] > 1)
                        ?? graph.Nodes.First(n => Dependencies(n).Any(v => ReferenceEquals(v.Producer, n)));
            throw new GraphValidationException($"graph '{graph.Name}' has a cycle through node '{stuck.Name}' ({stuck.OpType})");
        }
    }

    public static bool IsTopologicallyOrdered(Graph graph)
    {
        var done = new HashSet<Node>();
        foreach (var node in graph.Nodes)
        {
            foreach (var v in Dependencies(node))
                if (v.Producer is { } p && ReferenceEquals(p.Graph, graph) && !done.Contains(p)) return false;
            done.Add(node);
        }
        return true;
    }

    /// <summary>Producer → consumer edges between the nodes of one graph, including reads
    /// from inside a node's subgraphs.</summary>
    public static AdjacencyGraph<Node, SEdge<Node>> DependencyGraph(Graph graph)
    {
        var dag = new AdjacencyGraph<Node, SEdge<Node>>(allowParallelEdges: false);
        dag.AddVertexRange(graph.Nodes);
        foreach (var node in graph.Nodes)
            foreach (var v in Dependencies(node))
                if (v.Producer is { } p && ReferenceEquals(p.Graph, graph) && !dag.ContainsEdge(p, node))
                    dag.AddEdge(new SEdge<Node>(p, node));
        return dag;
    }

    private static IEnumerable<Value> Dependencies(Node node) =>
        node.Inputs.OfType<Value>().Concat(node.ImplicitInputs());
}
