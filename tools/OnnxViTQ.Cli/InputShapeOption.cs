using System.CommandLine;

namespace OnnxViTQ.Cli;

/// <summary><c>--input-shape</c>, shared by quantize and eval.</summary>
internal static class InputShapeOption
{
    public static Option<string?> Create() => new("--input-shape")
    {
        Description = "Sizes for the image input's dynamic dimensions, [name:]NxCxHxW (e.g. x:1x3x48x320); without it, float32 [N,C,H,W] .npy data gives them. " +
                      "The written model keeps its dynamic dimensions",
    };
}
