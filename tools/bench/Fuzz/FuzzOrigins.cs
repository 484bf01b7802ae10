using OnnxViTQ.Cli;

namespace OnnxViTQ.Fuzz;

/// <summary>The models mutants are made from: every committed reference model (both opsets, with
/// the outlier variants), the exports of models/exports (opsets 9–20 through the version adapters,
/// Constant-node weights, the CNN-transformer hybrid) and a <c>--format native</c> model of
/// vit.opset17.onnx, quantized here so its <c>com.onnxvitq</c> nodes are the ones this build writes.</summary>
internal static class FuzzOrigins
{
    public static IReadOnlyList<ModelMutator> Create(string modelsFolder, string workFolder)
    {
        Directory.CreateDirectory(workFolder);
        string exports = Path.Combine(modelsFolder, "exports");
        var origins = Directory.EnumerateFiles(modelsFolder, "*.onnx").Order(StringComparer.Ordinal)
            .Concat(Directory.Exists(exports) ? Directory.EnumerateFiles(exports, "*.onnx").Order(StringComparer.Ordinal) : [])
            .Select(p => new ModelMutator(Path.GetFileName(p), File.ReadAllBytes(p))).ToList();
        string native = Path.Combine(workFolder, "vit.native.onnx");
        var err = new StringWriter();
        int code = CliApp.Run(["quantize", Path.Combine(modelsFolder, "vit.opset17.onnx"), "-o", native, "--calib", Path.Combine(modelsFolder, "data", "calib_512.npy"),
            "--samples", "64", "--format", "native"], TextWriter.Null, err);
        if (code != 0) throw new InvalidOperationException($"the native-format origin could not be made: {err}");
        origins.Add(new ModelMutator("vit.native.onnx", File.ReadAllBytes(native)));
        return origins;
    }
}
