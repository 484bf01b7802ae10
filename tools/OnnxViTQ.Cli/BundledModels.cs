namespace OnnxViTQ.Cli;

/// <summary>The reference models and data subsets committed under models/ (see models/README.md).</summary>
internal sealed record BundledModels(string Root)
{
    public const string DefaultModel = "vit.opset17.onnx";

    public string ModelsDir => Path.Combine(Root, "models");
    public string Model(string file) => Path.Combine(ModelsDir, file);
    public string Calibration => Path.Combine(ModelsDir, "data", "calib_512.npy");
    public string EvalImages => Path.Combine(ModelsDir, "data", "eval_2000_images_u8.npy");
    public string EvalLabels => Path.Combine(ModelsDir, "data", "eval_2000_labels.npy");

    /// <summary>The first 16 evaluation images as PNG files (their labels: the first 16 of <see cref="EvalLabels"/>).</summary>
    public string PngFolder => Path.Combine(ModelsDir, "data", "png");

    /// <summary>Finds the repository's models/ folder above the working directory or the
    /// executable (the CLI runs from its build output inside the repository).</summary>
    public static BundledModels Locate()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "models", DefaultModel)))
                    return new BundledModels(dir.FullName);
        throw new OnnxViTQException($"the bundled reference models (models/{DefaultModel}) were not found above '{Directory.GetCurrentDirectory()}'; run from the OnnxViTQ repository or pass a model");
    }
}
