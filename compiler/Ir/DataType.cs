namespace OnnxViTQ.Ir;

/// <summary>ONNX tensor element types; numeric values equal <c>TensorProto.DataType</c>.</summary>
internal enum DataType
{
    Undefined = 0,
    Float = 1,
    UInt8 = 2,
    Int8 = 3,
    UInt16 = 4,
    Int16 = 5,
    Int32 = 6,
    Int64 = 7,
    String = 8,
    Bool = 9,
    Float16 = 10,
    Double = 11,
    UInt32 = 12,
    UInt64 = 13,
    Complex64 = 14,
    Complex128 = 15,
    BFloat16 = 16,
    Float8E4M3FN = 17,
    Float8E4M3FNUZ = 18,
    Float8E5M2 = 19,
    Float8E5M2FNUZ = 20,
    UInt4 = 21,
    Int4 = 22,
    Float4E2M1 = 23,
}

internal static class DataTypes
{
    /// <summary>Bits per element, 0 for types without a fixed-size raw encoding (string, undefined).</summary>
    public static int BitWidth(this DataType t) => t switch
    {
        DataType.Float or DataType.Int32 or DataType.UInt32 => 32,
        DataType.Double or DataType.Int64 or DataType.UInt64 or DataType.Complex64 => 64,
        DataType.Complex128 => 128,
        DataType.UInt8 or DataType.Int8 or DataType.Bool => 8,
        DataType.Float8E4M3FN or DataType.Float8E4M3FNUZ or DataType.Float8E5M2 or DataType.Float8E5M2FNUZ => 8,
        DataType.UInt16 or DataType.Int16 or DataType.Float16 or DataType.BFloat16 => 16,
        DataType.UInt4 or DataType.Int4 or DataType.Float4E2M1 => 4,
        _ => 0,
    };

    /// <summary>Bytes needed for <paramref name="count"/> elements in ONNX raw_data layout.</summary>
    public static long RawByteCount(this DataType t, long count)
    {
        int bits = t.BitWidth();
        if (bits == 0) throw new ArgumentException($"{t} has no raw encoding");
        if (count < 0 || count > (long.MaxValue - 7) / bits) throw new ArgumentException($"{count} elements of {t.OnnxName()} do not fit in a byte count");
        return (count * bits + 7) / 8;
    }

    public static bool IsFloatingPoint(this DataType t) =>
        t is DataType.Float or DataType.Double or DataType.Float16 or DataType.BFloat16;

    public static string OnnxName(this DataType t) => t switch
    {
        DataType.Float => "float32",
        DataType.Double => "float64",
        DataType.Float16 => "float16",
        DataType.BFloat16 => "bfloat16",
        _ => t.ToString().ToLowerInvariant(),
    };
}
