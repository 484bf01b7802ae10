using System.Runtime.InteropServices;

namespace OnnxViTQ.Ir;

/// <summary>
/// An immutable constant tensor. Numeric data is kept as little-endian bytes in ONNX raw_data
/// layout whatever field the file used, so every reader sees one form; string tensors keep their
/// elements as byte strings. Passes never mutate a tensor: they build a new one.
/// </summary>
internal sealed class Tensor
{
    private readonly ReadOnlyMemory<byte> _raw;
    private readonly byte[][]? _strings;

    private Tensor(DataType type, long[] dims, ReadOnlyMemory<byte> raw, byte[][]? strings)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
        DataType = type;
        Dims = dims;
        ElementCount = CountOf(dims);
        if (type == DataType.String)
        {
            _strings = strings ?? throw new ArgumentNullException(nameof(strings));
            if (_strings.Length != ElementCount)
                throw new ArgumentException($"string tensor has {_strings.Length} elements, shape needs {ElementCount}");
        }
        else
        {
            _raw = raw;
            long expected = type.RawByteCount(ElementCount);
            if (_raw.Length != expected)
                throw new ArgumentException($"{type.OnnxName()} tensor of shape [{string.Join(",", dims)}] needs {expected} bytes, got {_raw.Length}");
        }
    }

    /// <summary>The element count of a shape; a negative dimension, or a product past 2^62 (which
    /// would wrap to a small number and pass every size check), is an <see cref="ArgumentException"/>.</summary>
    public static long CountOf(IReadOnlyList<long> dims)
    {
        long count = 1;
        foreach (long d in dims)
        {
            if (d < 0) throw new ArgumentException($"shape [{string.Join(",", dims)}] has a negative dimension");
            if (d != 0 && count > (1L << 62) / d) throw new ArgumentException($"shape [{string.Join(",", dims)}] has more than 2^62 elements");
            count *= d;
        }
        return count;
    }

    public DataType DataType { get; }
    public IReadOnlyList<long> Dims { get; }
    public long ElementCount { get; }
    public int Rank => Dims.Count;

    /// <summary>Fields of the source TensorProto that the IR does not model (doc string,
    /// metadata); opaque to passes, owned by the reader/writer.</summary>
    internal object? Origin { get; set; }

    /// <summary>Wraps little-endian raw bytes without copying; the caller must not change them afterwards.</summary>
    public static Tensor FromRaw(DataType type, IEnumerable<long> dims, ReadOnlyMemory<byte> raw) => new(type, dims.ToArray(), raw, null);

    public static Tensor FromStrings(IEnumerable<long> dims, byte[][] values) => new(DataType.String, dims.ToArray(), ReadOnlyMemory<byte>.Empty, values);

    public static Tensor From<T>(DataType type, IEnumerable<long> dims, ReadOnlySpan<T> values) where T : unmanaged
    {
        if (type.BitWidth() != Marshal.SizeOf<T>() * 8)
            throw new ArgumentException($"{typeof(T).Name} does not match {type.OnnxName()}");
        return new Tensor(type, dims.ToArray(), MemoryMarshal.AsBytes(values).ToArray(), null);
    }

    public static Tensor FromFloats(IEnumerable<long> dims, ReadOnlySpan<float> values) => From(DataType.Float, dims, values);
    public static Tensor FromInt64s(IEnumerable<long> dims, ReadOnlySpan<long> values) => From(DataType.Int64, dims, values);
    public static Tensor Scalar(float value) => FromFloats([], [value]);

    public ReadOnlySpan<byte> RawBytes => RawMemory.Span;

    public ReadOnlyMemory<byte> RawMemory =>
        DataType == DataType.String ? throw new InvalidOperationException("string tensors have no raw bytes") : _raw;

    public IReadOnlyList<byte[]> Strings => _strings ?? throw new InvalidOperationException($"{DataType.OnnxName()} tensor is not a string tensor");

    /// <summary>The elements reinterpreted as <typeparamref name="T"/>; the type's width must match.</summary>
    public ReadOnlySpan<T> AsSpan<T>() where T : unmanaged
    {
        if (DataType.BitWidth() != Marshal.SizeOf<T>() * 8)
            throw new InvalidOperationException($"cannot view a {DataType.OnnxName()} tensor as {typeof(T).Name}");
        return MemoryMarshal.Cast<byte, T>(RawBytes);
    }

    /// <summary>Elements converted to float32 (for float, double, float16, bfloat16 and integer types).</summary>
    public float[] ToFloats()
    {
        var result = new float[ElementCount];
        switch (DataType)
        {
            case DataType.Float: AsSpan<float>().CopyTo(result); break;
            case DataType.Double: Convert(AsSpan<double>(), result, v => (float)v); break;
            case DataType.Float16: Convert(AsSpan<Half>(), result, v => (float)v); break;
            case DataType.BFloat16: Convert(AsSpan<ushort>(), result, v => BitConverter.Int32BitsToSingle(v << 16)); break;
            case DataType.Int8: Convert(AsSpan<sbyte>(), result, v => v); break;
            case DataType.UInt8: Convert(AsSpan<byte>(), result, v => v); break;
            case DataType.Int16: Convert(AsSpan<short>(), result, v => v); break;
            case DataType.UInt16: Convert(AsSpan<ushort>(), result, v => v); break;
            case DataType.Int32: Convert(AsSpan<int>(), result, v => v); break;
            case DataType.Int64: Convert(AsSpan<long>(), result, v => v); break;
            default: throw new NotSupportedException($"cannot convert a {DataType.OnnxName()} tensor to float32");
        }
        return result;
    }

    private static void Convert<TIn, TOut>(ReadOnlySpan<TIn> source, TOut[] target, Func<TIn, TOut> f)
    {
        for (int i = 0; i < source.Length; i++) target[i] = f(source[i]);
    }

    public override string ToString()
    {
        return $"{DataType.OnnxName()}[{string.Join(",", Dims)}]";
    }
}
