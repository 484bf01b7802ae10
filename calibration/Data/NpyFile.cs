using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace OnnxViTQ.Data;

/// <summary>Element types of .npy files this project reads and writes.</summary>
internal enum NpyDType { Float32, Float64, UInt8, Int8, Int32, Int64, Bool }

/// <summary>
/// A NumPy .npy file (format 1.0–3.0, C order, little-endian). Only the header is read on open;
/// elements are read on demand by range, so large files stream without being loaded whole.
/// </summary>
internal sealed partial class NpyFile
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    private NpyFile(string path, NpyDType dtype, long[] shape, long dataOffset)
    {
        Path = path;
        DType = dtype;
        Shape = shape;
        DataOffset = dataOffset;
    }

    public string Path { get; }
    public NpyDType DType { get; }
    public IReadOnlyList<long> Shape { get; }
    public long DataOffset { get; }
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);
    public int ElementSize => SizeOf(DType);

    public static NpyFile Open(string path)
    {
        if (!File.Exists(path)) throw new OnnxViTQException($"file '{path}' does not exist");
        using var stream = File.OpenRead(path);
        var head = new byte[10];
        if (stream.Read(head) < 10 || !head.AsSpan(0, 6).SequenceEqual(Magic))
            throw new OnnxViTQException($"'{path}' is not a .npy file (no NUMPY magic)");
        int major = head[6];
        long headerLength;
        long offset;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(8));
            offset = 10;
        }
        else if (major is 2 or 3)
        {
            var extra = new byte[2];
            if (stream.Read(extra) < 2) throw new OnnxViTQException($"'{path}' has a truncated .npy header");
            headerLength = BinaryPrimitives.ReadUInt32LittleEndian([head[8], head[9], extra[0], extra[1]]);
            offset = 12;
        }
        else throw new OnnxViTQException($"'{path}' uses .npy format version {major}, which is not supported");
        // The length is the file's claim: bound it by the file before allocating for it.
        if (headerLength > MaxHeaderBytes || headerLength > stream.Length - offset)
            throw new OnnxViTQException($"'{path}' claims a {headerLength}-byte .npy header; the file has {stream.Length} bytes and headers are at most {MaxHeaderBytes}");
        var header = new byte[headerLength];
        if (stream.ReadAtLeast(header, header.Length, throwOnEndOfStream: false) < headerLength)
            throw new OnnxViTQException($"'{path}' has a truncated .npy header");
        string text = Encoding.Latin1.GetString(header);
        var descr = DescrRegex().Match(text);
        var fortran = FortranRegex().Match(text);
        var shape = ShapeRegex().Match(text);
        if (!descr.Success || !shape.Success) throw new OnnxViTQException($"'{path}' has an unreadable .npy header: {text.Trim()}");
        if (fortran.Success && fortran.Groups[1].Value == "True")
            throw new OnnxViTQException($"'{path}' is stored in Fortran order; save it C-contiguous (np.ascontiguousarray)");
        var dtype = ParseDType(descr.Groups[1].Value, path);
        long[] dims = shape.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(d => ParseDim(d, path, text)).ToArray();
        var file = new NpyFile(path, dtype, dims, offset + headerLength);
        // Checked in this order so that a product past the file's size cannot wrap into range.
        long elements = 1;
        foreach (long d in dims)
        {
            if (d != 0 && elements > (stream.Length / file.ElementSize) / d)
                throw new OnnxViTQException($"'{path}' is truncated: shape ({string.Join(", ", dims)}) needs more bytes than the file's {stream.Length}");
            elements *= d;
        }
        long expected = file.DataOffset + elements * file.ElementSize;
        if (stream.Length < expected)
            throw new OnnxViTQException($"'{path}' is truncated: shape ({string.Join(", ", dims)}) needs {expected} bytes, the file has {stream.Length}");
        return file;
    }

    /// <summary>Reads <paramref name="destination"/>.Length elements starting at element
    /// <paramref name="start"/>, converted to float32.</summary>
    public void ReadFloats(long start, Span<float> destination)
    {
        var bytes = ReadBytes(start, destination.Length);
        switch (DType)
        {
            case NpyDType.Float32: System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).CopyTo(destination); break;
            case NpyDType.Float64: { var s = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(bytes); for (int i = 0; i < s.Length; i++) destination[i] = (float)s[i]; break; }
            case NpyDType.UInt8 or NpyDType.Bool: for (int i = 0; i < bytes.Length; i++) destination[i] = bytes[i]; break;
            case NpyDType.Int8: for (int i = 0; i < bytes.Length; i++) destination[i] = (sbyte)bytes[i]; break;
            case NpyDType.Int32: { var s = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(bytes); for (int i = 0; i < s.Length; i++) destination[i] = s[i]; break; }
            case NpyDType.Int64: { var s = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(bytes); for (int i = 0; i < s.Length; i++) destination[i] = s[i]; break; }
        }
    }

    /// <summary>Raw element bytes of the range (for uint8 images).</summary>
    public byte[] ReadBytes(long start, int count)
    {
        if (start < 0 || start + count > ElementCount) throw new ArgumentOutOfRangeException(nameof(start));
        var buffer = new byte[(long)count * ElementSize];
        using var handle = File.OpenHandle(Path);
        int read = 0;
        while (read < buffer.Length)
        {
            int n = RandomAccess.Read(handle, buffer.AsSpan(read), DataOffset + start * ElementSize + read);
            if (n == 0) throw new OnnxViTQException($"'{Path}' ended early");
            read += n;
        }
        return buffer;
    }

    /// <summary>Whole array as int64 (labels).</summary>
    public long[] ReadAllInt64()
    {
        if (DType is NpyDType.Float32 or NpyDType.Float64)
            throw new OnnxViTQException($"'{Path}' holds {DType} values; integer labels were expected");
        // Read integers as integers: float32 holds them exactly only up to 2^24.
        var bytes = ReadBytes(0, checked((int)ElementCount));
        return DType switch
        {
            NpyDType.Int64 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(bytes).ToArray(),
            NpyDType.Int32 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(bytes).ToArray().Select(v => (long)v).ToArray(),
            NpyDType.Int8 => bytes.Select(v => (long)(sbyte)v).ToArray(),
            _ => bytes.Select(v => (long)v).ToArray(), // uint8, bool
        };
    }

    public static void Write<T>(string path, ReadOnlySpan<T> data, params long[] shape) where T : unmanaged
    {
        var dtype = typeof(T) == typeof(float) ? "<f4" : typeof(T) == typeof(byte) ? "|u1" : typeof(T) == typeof(long) ? "<i8"
            : typeof(T) == typeof(int) ? "<i4" : typeof(T) == typeof(double) ? "<f8" : typeof(T) == typeof(sbyte) ? "|i1"
            : throw new NotSupportedException($"cannot write {typeof(T).Name} to .npy");
        string shapeText = shape.Length == 1 ? $"({shape[0]},)" : $"({string.Join(", ", shape)})";
        string dict = $"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shapeText}, }}";
        int total = 10 + dict.Length + 1;
        int padded = (total + 63) / 64 * 64;
        string header = dict + new string(' ', padded - total) + "\n";
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(data).ToArray();
        Serialization.AtomicFile.Write(path, s =>
        {
            s.Write(Magic);
            s.Write([1, 0]);
            Span<byte> len = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)header.Length);
            s.Write(len);
            s.Write(Encoding.Latin1.GetBytes(header));
            s.Write(bytes);
        });
    }

    /// <summary>Longest header accepted: NumPy writes tens of bytes, and its own reader stops at 10 000.</summary>
    private const int MaxHeaderBytes = 1 << 20;

    /// <summary>One dimension of the header's shape tuple; Python 2's NumPy wrote longs with an 'L' suffix.</summary>
    private static long ParseDim(string text, string path, string header)
    {
        string digits = text.EndsWith('L') ? text[..^1] : text;
        return long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long d)
            ? d
            : throw new OnnxViTQException($"'{path}' has a .npy shape entry '{text}' that is not a non-negative integer: {header.Trim()}");
    }

    private static NpyDType ParseDType(string descr, string path) => descr switch
    {
        "<f4" or "=f4" => NpyDType.Float32,
        "<f8" or "=f8" => NpyDType.Float64,
        "|u1" or "<u1" or "=u1" => NpyDType.UInt8,
        "|i1" or "<i1" or "=i1" => NpyDType.Int8,
        "<i4" or "=i4" => NpyDType.Int32,
        "<i8" or "=i8" => NpyDType.Int64,
        "|b1" => NpyDType.Bool,
        _ => throw new OnnxViTQException($"'{path}' has element type '{descr}'; supported: float32, float64, uint8, int8, int32, int64, bool (little-endian)"),
    };

    private static int SizeOf(NpyDType t) => t switch
    {
        NpyDType.Float32 or NpyDType.Int32 => 4,
        NpyDType.Float64 or NpyDType.Int64 => 8,
        _ => 1,
    };

    public string ShapeText => $"({string.Join(", ", Shape)})";

    [GeneratedRegex(@"'descr'\s*:\s*'([^']+)'")]
    private static partial Regex DescrRegex();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranRegex();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeRegex();
}
