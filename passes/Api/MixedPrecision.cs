using System.Globalization;
using System.Text.RegularExpressions;

namespace OnnxViTQ;

/// <summary>
/// Mixed precision (Liu et al. 2021): every attention (MSA) and MLP module gets one bit width in
/// [<paramref name="MinBits"/>, <paramref name="MaxBits"/>] for its weights and activations,
/// chosen to minimise the modules' summed sensitivity while the average width, weighted by each
/// module's weight count, stays at most <paramref name="AverageBits"/>. The patch embedding, the
/// head and the image input keep <see cref="QuantizationOptions.Bits"/>.
/// </summary>
/// <param name="MinBits">Smallest candidate width (≥ 2).</param>
/// <param name="MaxBits">Largest candidate width (≤ 8).</param>
/// <param name="AverageBits">Target average width over the modules' weights.</param>
public sealed partial record MixedPrecision(int MinBits, int MaxBits, double AverageBits)
{
    /// <summary>Parses the command line's <c>mixed:&lt;min&gt;-&lt;max&gt;</c> with the target average.</summary>
    /// <exception cref="OnnxViTQException">Malformed text, widths outside 2..8, or an average outside them.</exception>
    public static MixedPrecision Parse(string text, double averageBits)
    {
        var m = MixedRegex().Match(text.Trim());
        if (!m.Success) throw new OnnxViTQException($"bit widths '{text}' are not of the form mixed:<min>-<max> (e.g. mixed:4-8)");
        int min = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), max = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        if (min < 2 || max > 8 || min > max) throw new OnnxViTQException($"bit widths '{text}': the range must lie in 2..8");
        if (!(averageBits >= min && averageBits <= max)) throw new OnnxViTQException($"--avg-bits {averageBits.ToString(CultureInfo.InvariantCulture)} must lie in {min}..{max}");
        return new MixedPrecision(min, max, averageBits);
    }

    /// <summary>True for the <c>mixed:</c> form of <c>--bits</c>.</summary>
    public static bool IsMixed(string text) => text.Trim().StartsWith("mixed:", StringComparison.OrdinalIgnoreCase);

    [GeneratedRegex("^[Mm]ixed:(\\d+)-(\\d+)$")]
    private static partial Regex MixedRegex();
}
