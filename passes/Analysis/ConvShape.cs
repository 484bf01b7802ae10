using OnnxViTQ.Ir;
using OnnxViTQ.Patterns;

namespace OnnxViTQ.Passes.Analysis;

/// <summary>What a convolution is, from its attributes and constant weight.</summary>
internal static class ConvShape
{
    /// <summary>Depthwise: one group per input channel, one output channel per group (weight [C, 1, k…]).</summary>
    public static bool IsDepthwise(Node conv)
    {
        long group = conv.GetInt("group", 1);
        return group > 1 && conv.Input(1) is { } w && Constants.TryGetTensor(w, out var t) && t.Rank >= 3 && t.Dims[1] == 1 && t.Dims[0] == group;
    }

    /// <summary>A ViT's patchify convolution: it reads the image and its stride equals its kernel.</summary>
    public static bool IsPatchEmbedding(Node conv)
    {
        if (conv.Input(0) is not { IsGraphInput: true }) return false;
        var kernel = conv.Attribute("kernel_shape")?.AsInts()
            ?? (conv.Input(1) is { } w && Constants.TryGetTensor(w, out var t) && t.Rank >= 3 ? t.Dims.Skip(2).ToArray() : null);
        var strides = conv.Attribute("strides")?.AsInts();
        return kernel is { Count: > 0 } && strides is not null && kernel.SequenceEqual(strides) && kernel.Any(k => k > 1);
    }
}
