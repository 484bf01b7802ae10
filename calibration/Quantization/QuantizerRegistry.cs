namespace OnnxViTQ.Quantization;

/// <summary>
/// Every quantizer kind the compiler knows, in one table. Adding a quantizer is one file (its
/// kind and fitted form, with the capabilities it offers) plus one line here; recipes, recipe
/// files, reports and emitters find it by name, and every pass that asks for a capability it
/// offers uses it. A test checks that every kind here fits, simulates and emits.
/// </summary>
internal static class QuantizerRegistry
{
    private static readonly IReadOnlyList<IQuantizerKind> BuiltIn =
    [
        new UniformQuantizerKind(),
        new PerTokenQuantizerKind(),
        new OutlierSplitQuantizerKind(),
        new ShiftLog2QuantizerKind(),
        LogQuantizerKind.Log2,
        LogQuantizerKind.LogSqrt2,
        new TanQuantizerKind(),
        new TwinUniformQuantizerKind(),
    ];

    private static readonly object Gate = new();
    private static IReadOnlyList<IQuantizerKind> _all = BuiltIn;

    /// <summary>The built-in kinds and any registered since.</summary>
    public static IReadOnlyList<IQuantizerKind> All => _all;

    /// <summary>Adds a kind defined outside this table (a plug-in, a test's kind) until the result
    /// is disposed; its name must be new.</summary>
    public static IDisposable Register(IQuantizerKind kind)
    {
        lock (Gate)
        {
            if (_all.Any(k => k.Name.Equals(kind.Name, StringComparison.OrdinalIgnoreCase)))
                throw new InvalidOperationException($"quantizer '{kind.Name}' is already registered");
            _all = [.. _all, kind];
        }
        return new Registration(kind);
    }

    private sealed class Registration(IQuantizerKind kind) : IDisposable
    {
        public void Dispose()
        {
            lock (Gate) _all = _all.Where(k => !ReferenceEquals(k, kind)).ToList();
        }
    }

    public static IQuantizerKind Get(string name) =>
        All.FirstOrDefault(k => k.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new OnnxViTQException($"unknown quantizer '{name}'; available: {string.Join(", ", All.Select(k => k.Name))}");

    /// <summary>A validated spec: the kind exists and applies to <paramref name="role"/>, the bit
    /// width is in its range, every option is known and valid. <paramref name="where"/> prefixes
    /// error messages (e.g. the recipe file and role).</summary>
    public static QuantizerSpec Spec(string kind, int bits, TensorRole role, IReadOnlyDictionary<string, string>? options = null, string? where = null)
    {
        string at = where is null ? "" : where + ": ";
        var k = Get(kind);
        bool weight = role == TensorRole.Weight;
        if (weight && k.Target == QuantizerTarget.Activations)
            throw new OnnxViTQException($"{at}quantizer '{k.Name}' applies to activations, not weights");
        if (!weight && k.Target == QuantizerTarget.Weights)
            throw new OnnxViTQException($"{at}quantizer '{k.Name}' applies to weights, not {role.Name()} activations");
        if (bits < k.MinBits || bits > k.MaxBits)
            throw new OnnxViTQException($"{at}quantizer '{k.Name}' supports {k.MinBits} to {k.MaxBits} bits, not {bits}");
        var given = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in options ?? new Dictionary<string, string>())
        {
            var option = k.Options.FirstOrDefault(o => o.Name == name)
                ?? throw new OnnxViTQException($"{at}quantizer '{k.Name}' has no option '{name}'" +
                                               (k.Options.Count == 0 ? "" : $"; options: {string.Join(", ", k.Options.Select(o => o.Name))}"));
            if (option.Validate(value) is { } why) throw new OnnxViTQException($"{at}option '{name}' of quantizer '{k.Name}' = '{value}' {why}");
            given[name] = value;
        }
        var spec = new QuantizerSpec(k, bits, given);
        if (k.Check(spec, role) is { } problem) throw new OnnxViTQException($"{at}quantizer '{k.Name}' for {role.Name()}: {problem}");
        return spec;
    }
}
