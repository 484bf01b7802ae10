namespace OnnxViTQ.Quantization;

/// <summary>
/// What a quantized tensor is in a vision transformer, as far as the methods of METHODS.md care:
/// each method picks its quantizer by role (post-LayerNorm activations get per-token or
/// reparameterized quantizers, post-GELU shift-log2, post-Softmax log2...).
/// </summary>
internal enum TensorRole
{
    /// <summary>A constant weight of a linear layer or convolution.</summary>
    Weight,
    /// <summary>A LayerNorm output feeding qkv, fc1, Swin's patch-merging reduction or a head.</summary>
    PostLayerNorm,
    /// <summary>The GELU output feeding fc2.</summary>
    PostGelu,
    /// <summary>Attention probabilities feeding attn·V.</summary>
    PostSoftmax,
    /// <summary>Left operand of the attention-score product Q·Kᵀ.</summary>
    Query,
    /// <summary>Right operand of the attention-score product Q·Kᵀ.</summary>
    Key,
    /// <summary>Right operand of attn·V.</summary>
    Value,
    /// <summary>Input of the attention output projection (the attn·V result).</summary>
    AttentionOutput,
    /// <summary>The network's input (the image read by the patch embedding).</summary>
    Input,
    /// <summary>A feature map read by a convolution inside the network (CNN stems and blocks of hybrids).</summary>
    ConvInput,
    /// <summary>A feature map read by a depthwise convolution (each output channel reads one input
    /// channel, so a scale per channel costs nothing at deployment).</summary>
    DepthwiseInput,
    /// <summary>Anything else (unrecognised patterns).</summary>
    Other,
}

internal static class TensorRoles
{
    public static IReadOnlyList<TensorRole> All { get; } = Enum.GetValues<TensorRole>();

    /// <summary>The name used in reports, <c>inspect</c> and recipe files.</summary>
    public static string Name(this TensorRole role) => role switch
    {
        TensorRole.Weight => "weight",
        TensorRole.PostLayerNorm => "post-layernorm",
        TensorRole.PostGelu => "post-gelu",
        TensorRole.PostSoftmax => "post-softmax",
        TensorRole.Query => "query",
        TensorRole.Key => "key",
        TensorRole.Value => "value",
        TensorRole.AttentionOutput => "attention-output",
        TensorRole.Input => "input",
        TensorRole.ConvInput => "conv-input",
        TensorRole.DepthwiseInput => "depthwise-input",
        TensorRole.Other => "other",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, null),
    };

    public static bool TryParse(string name, out TensorRole role)
    {
        foreach (var r in All)
            if (r.Name().Equals(name, StringComparison.OrdinalIgnoreCase)) { role = r; return true; }
        role = default;
        return false;
    }

    public static TensorRole Parse(string name) => TryParse(name, out var r) ? r
        : throw new OnnxViTQException($"unknown tensor role '{name}'; roles: {string.Join(", ", All.Select(x => x.Name()))}");

    public static bool IsActivation(this TensorRole role) => role != TensorRole.Weight;
}

/// <summary>How many parameter sets a quantizer has: one, one per channel, or one per token
/// row computed at run time.</summary>
internal enum Granularity { PerTensor, PerChannel, PerToken }

internal static class Granularities
{
    public static string Name(this Granularity g) => g switch
    {
        Granularity.PerTensor => "per-tensor",
        Granularity.PerChannel => "per-channel",
        Granularity.PerToken => "per-token",
        _ => throw new ArgumentOutOfRangeException(nameof(g), g, null),
    };
}
