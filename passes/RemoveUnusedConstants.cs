using OnnxViTQ.Quantization;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;

namespace OnnxViTQ.Passes;

/// <summary>Cleanup: drops initializers and Constant nodes nothing reads any more (e.g. float
/// weights replaced by their int8 form). Graph inputs and outputs are kept.</summary>
internal sealed class RemoveUnusedConstants : IPass
{
    public PassContract Contract => PassContract.Anywhere;
    public string Name => "remove-unused-constants";

    public PassResult Run(Model model, PassContext context)
    {
        int removed = 0;
        foreach (var graph in model.AllGraphs().ToList())
        {
            foreach (var node in graph.Nodes.Where(n => n.OpType == "Constant" && n.Domain is "" or "ai.onnx").ToList())
                if (node.Outputs.All(o => o is null || (o.Consumers.Count == 0 && !o.IsGraphOutput)))
                {
                    graph.RemoveNode(node);
                    removed++;
                }
            foreach (var init in graph.Initializers.Where(v => v.Consumers.Count == 0 && !v.IsGraphOutput && !v.IsGraphInput).ToList())
            {
                graph.RemoveInitializer(init);
                removed++;
            }
        }
        if (removed > 0) context.Info($"removed {removed} unused constants");
        return new PassResult(removed > 0);
    }
}
