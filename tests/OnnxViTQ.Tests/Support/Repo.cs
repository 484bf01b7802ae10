namespace OnnxViTQ.Tests.Support;

/// <summary>Paths of the committed reference models and data (models/README.md).</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    public static string Models => Path.Combine(Root, "models");
    public static string Model(string file) => Path.Combine(Models, file);
    public static string Calibration => Path.Combine(Models, "data", "calib_512.npy");
    public static string EvalImages => Path.Combine(Models, "data", "eval_2000_images_u8.npy");
    public static string EvalLabels => Path.Combine(Models, "data", "eval_2000_labels.npy");
    public static string PngFolder => Path.Combine(Models, "data", "png");

    /// <summary>Every committed reference model: three families at two opsets.</summary>
    public static readonly string[] ReferenceModels =
    [
        "vit.opset17.onnx", "vit.opset13.onnx",
        "deit.opset17.onnx", "deit.opset13.onnx",
        "swin.opset17.onnx", "swin.opset13.onnx",
    ];

    /// <summary>Their function-preserving outlier variants (models/README.md), in the same order.</summary>
    public static readonly string[] OutlierModels = ReferenceModels.Select(OutlierVariant).ToArray();

    public static readonly string[] AllModels = [.. ReferenceModels, .. OutlierModels];

    public static string OutlierVariant(string file) => file.Replace(".opset", "-outliers.opset");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "OnnxViTQ.sln"))) return dir.FullName;
        throw new InvalidOperationException("repository root (OnnxViTQ.sln) not found above the test directory");
    }
}

/// <summary>A fresh temporary folder per use, removed on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "onnxvitq-tests", Guid.NewGuid().ToString("N"));
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
    }
}
