using System.CommandLine;
using OnnxViTQ.Passes;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using Spectre.Console;

namespace OnnxViTQ.Cli;

internal static class InspectCommand
{
    public static Command Create(CliIO io)
    {
        var model = new Argument<string>("model") { Description = "ONNX model to describe" };
        var cmd = new Command("inspect", "List a model's inputs, outputs, op counts, and the MatMul/Gemm nodes that would be quantized") { model };
        cmd.SetAction(r => CliApp.Guard(io, () =>
        {
            Inspect(io, r.GetValue(model)!);
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static void Inspect(CliIO io, string path)
    {
        var m = OnnxModelReader.Load(Paths.ExistingFile(path, "model file"));
        var g = m.Graph;
        io.Out.WriteLine($"{path}: {Paths.Size(new FileInfo(path).Length)}, IR version {m.IrVersion}, producer '{m.ProducerName}', " +
                         $"opsets {string.Join(", ", m.OpsetImports.Select(o => $"{(o.Domain.Length == 0 ? "ai.onnx" : o.Domain)} {o.Version}"))}");
        long parameters = g.Initializers.Sum(v => v.Initializer!.ElementCount);
        io.Out.WriteLine($"{g.Nodes.Count} nodes, {g.Initializers.Count} initializers ({parameters:N0} elements)");

        var io_ = new Table().Border(TableBorder.Rounded).AddColumn("").AddColumn("name").AddColumn("type");
        foreach (var v in g.Inputs.Where(v => !v.IsInitializer)) io_.AddRow("input", Markup.Escape(v.Name), Markup.Escape(v.Type?.ToString() ?? "?"));
        foreach (var v in g.Outputs) io_.AddRow("output", Markup.Escape(v.Name), Markup.Escape(v.Type?.ToString() ?? "?"));
        io.Console.Write(io_);

        var ops = new Table().Border(TableBorder.Rounded).AddColumn("op").AddColumn(new TableColumn("count").RightAligned());
        foreach (var group in g.Nodes.GroupBy(n => n.Domain.Length > 0 ? $"{n.Domain}.{n.OpType}" : n.OpType).OrderByDescending(x => x.Count()).ThenBy(x => x.Key))
            ops.AddRow(Markup.Escape(group.Key), group.Count().ToString());
        io.Console.Write(ops);

        if (m.Metadata.Count > 0)
        {
            var meta = new Table().Border(TableBorder.Rounded).AddColumn("metadata").AddColumn("value");
            foreach (var kv in m.Metadata) meta.AddRow(Markup.Escape(kv.Key), Markup.Escape(kv.Value));
            io.Console.Write(meta);
        }

        var context = new PassContext();
        try
        {
            new SelectMatMulTargets().Run(m, context);
        }
        catch (OnnxViTQException e)
        {
            io.Out.WriteLine($"not quantizable: {e.Message}");
            return;
        }
        var targets = context.Get<QuantizationTargets>();
        var table = new Table().Border(TableBorder.Rounded).Title("MatMul/Gemm nodes that would be quantized")
            .AddColumn("node").AddColumn("op").AddColumn("kind").AddColumn("weight").AddColumn("per-channel axis");
        foreach (var node in targets.Nodes)
        {
            var own = targets.All.Where(t => t.Node == node).ToList();
            var weight = own.FirstOrDefault(t => t.Role == TensorRole.Weight);
            string weightText = "";
            if (weight is not null && Constants.TryGetTensor(weight.Value, out var w)) weightText = $"{weight.Value.Name} [{string.Join("×", w.Dims)}]";
            table.AddRow(Markup.Escape(node.Name), node.OpType,
                weight is null ? "activation × activation" : "activation × weight",
                Markup.Escape(weightText), weight?.ChannelAxis?.ToString() ?? "");
        }
        io.Console.Write(table);
        io.Out.WriteLine($"{targets.Nodes.Count} of {g.Nodes.Count(n => n.OpType is "MatMul" or "Gemm")} MatMul/Gemm nodes would be quantized");
    }
}
