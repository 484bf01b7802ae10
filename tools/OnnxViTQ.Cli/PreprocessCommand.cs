using System.CommandLine;

namespace OnnxViTQ.Cli;

/// <summary><c>onnxvitq preprocess</c>: the image-bytes form of a model (FP32 or quantized), whose
/// input is one encoded image (see <see cref="OnnxQuantizer.EmbedPreprocessing"/>).</summary>
internal static class PreprocessCommand
{
    public static Command Create(CliIO io)
    {
        var model = new Argument<string>("model") { Description = "ONNX image classifier with one float input [N,C,H,W] (dynamic or unit batch)" };
        var output = new Option<string>("--output", "-o") { Description = "Where to write the image-bytes model (written atomically)", Required = true };
        var pre = new PreprocessingOptions();
        var cmd = new Command("preprocess", "Write a model that takes one encoded image (PNG/JPEG bytes, uint8 1-D) instead of a float tensor: " +
                                            "ONNX Runtime Extensions' DecodeImage, then resize, center crop and normalization in standard ONNX ops " +
                                            "with the preprocessing quantize uses (model metadata, or --mean/--std/--crop-pct). Sessions that run it " +
                                            "must register the Extensions library (SessionOptions.RegisterOrtExtensions())")
        {
            model, output,
        };
        pre.AddTo(cmd);
        cmd.SetAction(r => CliApp.Guard(io, () =>
        {
            string input = r.GetValue(model)!, outPath = r.GetValue(output)!;
            OnnxQuantizer.EmbedPreprocessing(input, outPath, pre.Read(r));
            io.Out.WriteLine($"wrote {outPath}: input '{Data.EmbeddedPreprocessing.InputName}' (uint8 encoded image), output as {input}");
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
