using System.Globalization;

namespace OnnxViTQ.Quantization;

/// <summary>An option a quantizer kind accepts: its name, what it does, its default, and a
/// check that returns why a value is invalid (null when valid).</summary>
internal sealed record QuantizerOption(string Name, string Description, string Default, Func<string, string?> Validate)
{
    public static QuantizerOption Number(string name, string description, double @default, double min, double max) =>
        new(name, description, @default.ToString(CultureInfo.InvariantCulture), v =>
            !double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? "is not a number"
            : d < min || d > max ? $"must be in [{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}]" : null);

    public static QuantizerOption Choice(string name, string description, params string[] choices) =>
        new(name, description, choices[0], v => choices.Contains(v) ? null : $"must be one of {string.Join(", ", choices)}");
}

/// <summary>Which quantizer a site gets: the registered kind, its bit width, and its options
/// (already validated against the kind; absent options take the kind's defaults).</summary>
internal sealed record QuantizerSpec
{
    internal QuantizerSpec(IQuantizerKind kind, int bits, IReadOnlyDictionary<string, string> options)
    {
        KindInfo = kind;
        Bits = bits;
        Options = options;
    }

    public IQuantizerKind KindInfo { get; }
    public string Kind => KindInfo.Name;
    public int Bits { get; init; }

    /// <summary>The options given explicitly (defaults are not listed).</summary>
    public IReadOnlyDictionary<string, string> Options { get; }

    public string Option(string name)
    {
        if (Options.TryGetValue(name, out var v)) return v;
        return KindInfo.Options.FirstOrDefault(o => o.Name == name)?.Default
               ?? throw new InvalidOperationException($"quantizer '{Kind}' has no option '{name}'");
    }

    public double Number(string name) => double.Parse(Option(name), CultureInfo.InvariantCulture);

    public override string ToString() =>
        $"{Kind} {Bits}-bit" + (Options.Count == 0 ? "" : $" ({string.Join(", ", Options.Select(kv => $"{kv.Key}={kv.Value}"))})");
}
