using OnnxViTQ;

if (args.Length is not (3 or 5))
{
    Console.Error.WriteLine("usage: LibraryApi <model.onnx> <calibration> <output.onnx> [<eval images> <eval labels>]");
    return 1;
}
try
{
    var summary = OnnxQuantizer.QuantizeFile(args[0], args[1], args[2], new QuantizationOptions
    {
        Recipe = "repq",
        Bits = BitWidths.Parse("W8A8"),
        CalibrationSamples = 64,
        Format = OutputFormat.Native,
    });
    Console.WriteLine($"{summary.Recipe} {summary.Bits} {summary.Format}: {summary.QuantizedNodes} nodes quantized on {summary.CalibrationSamples} samples -> {summary.OutputPath}");
    if (args.Length == 5)
    {
        var fp32 = OnnxQuantizer.EvaluateAccuracy(args[0], args[3], args[4], limit: 500);
        var quantized = OnnxQuantizer.EvaluateAccuracy(args[2], args[3], args[4], limit: 500);
        Console.WriteLine($"top-1 on {fp32.Samples} samples: FP32 {100 * fp32.Top1:0.00} %, quantized {100 * quantized.Top1:0.00} %");
    }
    return 0;
}
catch (OnnxViTQException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
