using System.CommandLine;
using OnnxViTQ.Passes.Canonicalize;
using OnnxViTQ.Serialization;

namespace OnnxViTQ.Cli;

/// <summary><c>onnxvitq convert</c>: writes a model at another default opset with the compiler's
/// own version adapters (<see cref="OpsetConversion"/>), the conversion quantize applies itself.</summary>
internal static class ConvertCommand
{
    public static Command Create(CliIO io)
    {
        var model = new Argument<string>("model") { Description = "ONNX model (default opset 7–21)" };
        var output = new Option<string>("--output", "-o") { Description = "Where to write the converted model (written atomically)", Required = true };
        var opset = new Option<int>("--opset") { Description = $"Target default opset, {OpsetConversion.CompilerMin}–{OnnxOperatorVersions.NewestKnown}", Required = true };
        var fuseGelu = new Option<bool>("--fuse-gelu") { Description = "At opset 20 or later, write the Erf form of GELU as the Gelu operator (as exporters do from opset 20)" };
        var cmd = new Command("convert", "Convert a model to another ONNX opset with the version adapters quantize uses (it brings opsets 7–12 up to 13 and 18–21 down to 17 by itself); " +
                                         "a node no adapter converts is named and nothing is written")
        {
            model, output, opset, fuseGelu,
        };
        cmd.SetAction(r => CliApp.Guard(io, () =>
        {
            string input = Paths.ExistingFile(r.GetValue(model)!, "model file"), outPath = r.GetValue(output)!;
            if (Paths.SameFile(input, outPath)) throw new OnnxViTQException($"output '{outPath}' is the input model; choose another -o");
            var m = OnnxModelReader.Load(input);
            var summary = OpsetConversion.Convert(m, r.GetValue(opset), input, values => Canonicalize.ProbeShapes(m, values, input), r.GetValue(fuseGelu));
            Paths.SaveModel(m, outPath);
            io.Out.WriteLine($"{input}: {summary}");
            io.Out.WriteLine($"wrote {outPath}");
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
