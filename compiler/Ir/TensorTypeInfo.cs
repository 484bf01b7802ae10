namespace OnnxViTQ.Ir;

/// <summary>One dimension of a tensor shape: a known size, a named symbol, or unknown (both null).</summary>
internal readonly record struct Dim(long? Size, string? Symbol)
{
    public static Dim Known(long size) => new(size, null);
    public static Dim Named(string symbol) => new(null, symbol);
    public static readonly Dim Unknown = new(null, null);
    public override string ToString() => Size?.ToString() ?? Symbol ?? "?";
}

/// <summary>Element type and (optional) shape of a tensor value. A null <see cref="Shape"/> means rank unknown.</summary>
internal sealed class TensorTypeInfo
{
    public TensorTypeInfo(DataType elementType, IReadOnlyList<Dim>? shape)
    {
        ElementType = elementType;
        Shape = shape?.ToArray();
    }

    public DataType ElementType { get; }
    public IReadOnlyList<Dim>? Shape { get; }

    public static TensorTypeInfo Of(DataType type, params long[] dims) =>
        new(type, dims.Select(d => d < 0 ? Dim.Unknown : Dim.Known(d)).ToArray());

    public override string ToString() =>
        Shape is null ? $"{ElementType.OnnxName()}[?]" : $"{ElementType.OnnxName()}[{string.Join(",", Shape)}]";
}
