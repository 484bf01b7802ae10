using System.CommandLine;
using OnnxViTQ.Passes;
using OnnxViTQ.Passes.Canonicalize;
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
        var exclude = ExcludeOption.Create();
        var cmd = new Command("inspect", "List a model's inputs, outputs, op counts, and the tensors quantize would quantize, with their role (post-layernorm, post-gelu, post-softmax, query, key, value, attention-output, input, conv-input, depthwise-input, weight, other) per module; with --exclude, what it would keep in float") { model, exclude };
        cmd.SetAction(r => CliApp.Guard(io, () =>
        {
            Inspect(io, r.GetValue(model)!, new Exclusions(r.GetValue(exclude) ?? []));
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static void Inspect(CliIO io, string path, Exclusions exclusions)
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
            // What quantize would see: canonical weights, sites, roles (the file is not changed).
            new PassManager([CanonicalizationRules.Pass(path), new SelectQuantizationSites(), new TagViTRoles()]).Run(m, context);
        }
        catch (OnnxViTQException e)
        {
            io.Out.WriteLine($"not quantizable: {e.Message}");
            return;
        }
        if (context.TryGet<OpsetConversionSummary>(out var conversion) && conversion.Changed)
            io.Out.WriteLine($"quantize converts it: {conversion} (onnxvitq convert writes the converted model)");
        var plan = context.Get<QuantizationPlan>();
        exclusions.Apply(plan, "--exclude");
        var table = new Table().Border(TableBorder.Rounded).Title("Quantization sites by module (what quantize would quantize, and each tensor's role)")
            .AddColumn("module").AddColumn("node").AddColumn("op").AddColumn("input").AddColumn("role").AddColumn("tensor");
        var order = m.Graph.Nodes.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i);
        foreach (var module in plan.Sites.GroupBy(s => s.Module).OrderBy(g => g.Min(s => s.Uses.Min(u => order[u.Node]))))
        {
            bool first = true;
            foreach (var node in module.SelectMany(s => s.Uses.Select(u => (Use: u, Site: s))).GroupBy(x => x.Use.Node).OrderBy(g => order[g.Key]))
                foreach (var (use, site) in node.OrderBy(x => x.Use.InputIndex))
                {
                    string tensor = site.IsWeight && Constants.TryGetTensor(site.Value, out var w)
                        ? $"{site.Name} [{string.Join("×", w.Dims)}]{(site.ChannelAxis is { } a ? $" axis {a}" : " per-tensor")}"
                        : site.Name;
                    table.AddRow(first ? Markup.Escape(module.Key.Length == 0 ? "(none)" : module.Key) : "", Markup.Escape(node.Key.Name), node.Key.OpType,
                        use.InputIndex.ToString(), site.Role.Name(), Markup.Escape(tensor));
                    first = false;
                }
        }
        io.Console.Write(table);
        int quantizable = g.Nodes.Count(n => n.OpType is "MatMul" or "Gemm" or "Conv");
        io.Out.WriteLine($"{plan.QuantizedNodes.Count} of {quantizable} MatMul/Gemm/Conv nodes would be quantized; roles: " +
                         string.Join(", ", plan.Sites.GroupBy(s => s.Role).OrderBy(x => x.Key).Select(x => $"{x.Count()} {x.Key.Name()}")));
        foreach (var site in plan.Sites.Where(s => s.Notes.Count > 0))
            io.Out.WriteLine($"  {site.Name}: {string.Join("; ", site.Notes)}");
        if (plan.Excluded.Count > 0)
        {
            var excluded = new Table().Border(TableBorder.Rounded).Title("Kept in float by --exclude")
                .AddColumn("pattern").AddColumn("module").AddColumn("node").AddColumn("op").AddColumn("input").AddColumn("role").AddColumn("tensor");
            foreach (var e in plan.Excluded)
                excluded.AddRow(Markup.Escape(e.Pattern), Markup.Escape(e.Module), Markup.Escape(e.Node), e.OpType, e.Input.ToString(), e.Role, Markup.Escape(e.Tensor));
            io.Console.Write(excluded);
        }
    }
}
