using System.Text.RegularExpressions;

namespace OnnxViTQ;

/// <summary>Weight and activation bit widths, written "W8A8".</summary>
/// <param name="Weights">Bits of weights, 2 to 8.</param>
/// <param name="Activations">Bits of activations, 2 to 8.</param>
public sealed partial record BitWidths(int Weights, int Activations)
{
    /// <summary>8-bit weights and activations.</summary>
    public static readonly BitWidths W8A8 = new(8, 8);

    /// <summary>Parses "W&lt;bits&gt;A&lt;bits&gt;" (case-insensitive), e.g. "W4A8".</summary>
    /// <exception cref="OnnxViTQException">The text is malformed or a width is outside 2..8.</exception>
    public static BitWidths Parse(string text)
    {
        var m = BitsRegex().Match(text.Trim());
        if (!m.Success) throw new OnnxViTQException($"bit widths '{text}' are not of the form W<bits>A<bits> (e.g. W8A8, W6A6, W4A4)");
        var b = new BitWidths(int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value));
        if (b.Weights is < 2 or > 8 || b.Activations is < 2 or > 8)
            throw new OnnxViTQException($"bit widths '{text}': weights and activations must each be 2 to 8 bits");
        return b;
    }

    /// <summary>The "W8A8" form.</summary>
    public override string ToString() => $"W{Weights}A{Activations}";

    [GeneratedRegex("^[Ww](\\d+)[Aa](\\d+)$")]
    private static partial Regex BitsRegex();
}
