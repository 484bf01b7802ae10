using System.CommandLine;
using System.Globalization;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Reparameterize;
using OnnxViTQ.Serialization;
using Spectre.Console;

namespace OnnxViTQ.Cli;

/// <summary><c>onnxvitq outliers</c>: writes the function-preserving outlier variant of a model
/// (see <see cref="InjectOutlierChannels"/>).</summary>
internal static class OutliersCommand
{
    public static Command Create(CliIO io)
    {
        var model = new Argument<string>("model") { Description = "FP32 ONNX vision transformer" };
        var output = new Option<string>("--output", "-o") { Description = "Where to write the variant (written atomically)", Required = true };
        var fraction = new Option<double>("--fraction") { Description = "Fraction of each LayerNorm's channels made outliers (at least one)", DefaultValueFactory = _ => 0.02 };
        var min = new Option<float>("--min-factor") { Description = "Smallest outlier factor", DefaultValueFactory = _ => 8f };
        var max = new Option<float>("--max-factor") { Description = "Largest outlier factor (factors are log-uniform in [min, max])", DefaultValueFactory = _ => 50f };
        var seed = new Option<int>("--seed") { Description = "Seed for the choice of channels and factors", DefaultValueFactory = _ => 1 };
        var cmd = new Command("outliers", "Write a function-preserving variant of a model whose post-LayerNorm activations carry a few channels 8–50× larger " +
                                          "(γ, β of those channels scaled up, the matching weight rows scaled down): the outlier problem of ImageNet ViTs, for testing")
        {
            model, output, fraction, min, max, seed,
        };
        cmd.SetAction(r => CliApp.Guard(io, () =>
        {
            string input = Paths.ExistingFile(r.GetValue(model)!, "model file"), outPath = r.GetValue(output)!;
            if (Paths.SameFile(input, outPath)) throw new OnnxViTQException($"output '{outPath}' is the input model; choose another -o");
            var m = OnnxModelReader.Load(input);
            var context = new PassContext();
            new PassManager([new InjectOutlierChannels(r.GetValue(fraction), r.GetValue(min), r.GetValue(max), r.GetValue(seed), input)]).Run(m, context);
            Paths.SaveModel(m, outPath);
            var table = new Table().Border(TableBorder.Rounded).AddColumn("LayerNorm").AddColumn("outlier channels (factor)");
            foreach (var i in context.Get<IReadOnlyList<InjectedOutliers>>())
                table.AddRow(Markup.Escape(i.LayerNorm), string.Join(", ", i.Channels.Zip(i.Factors, (c, f) => string.Create(CultureInfo.InvariantCulture, $"{c} (×{f:0.0})"))));
            io.Console.Write(table);
            foreach (var d in context.Diagnostics.Where(d => d.Message.Contains("left as is"))) io.Out.WriteLine(d.Message);
            io.Out.WriteLine($"wrote {outPath}");
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
