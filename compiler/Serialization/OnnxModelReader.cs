using Google.Protobuf;
using Onnx;
using OnnxViTQ.Ir;

namespace OnnxViTQ.Serialization;

/// <summary>
/// Reads an ONNX ModelProto into the IR. The modelled fields become IR objects; each IR object
/// keeps a copy of its source message with those fields cleared (<c>Origin</c>), so everything
/// else — doc strings, producer, functions, unknown fields from newer ONNX versions — is written
/// back unchanged. External data is loaded into memory.
/// </summary>
internal static class OnnxModelReader
{
    public static Model Load(string path)
    {
        if (Directory.Exists(path)) throw new OnnxFormatException($"'{path}' is a directory, not an ONNX model file");
        if (!File.Exists(path)) throw new OnnxFormatException($"model file '{path}' does not exist");
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (IOException e)
        {
            throw new OnnxFormatException($"cannot read model file '{path}': {e.Message}", e);
        }
        return Parse(bytes, Path.GetDirectoryName(Path.GetFullPath(path)), path);
    }

    /// <summary>Parses a serialized ModelProto.</summary>
    /// <param name="bytes">The serialized model.</param>
    /// <param name="externalDataDirectory">Where relative external-data locations are resolved;
    /// null rejects models with external data.</param>
    /// <param name="sourceName">Names the model in error messages.</param>
    public static Model Parse(byte[] bytes, string? externalDataDirectory = null, string sourceName = "<in-memory model>")
    {
        ModelProto proto;
        try
        {
            proto = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new OnnxFormatException($"'{sourceName}' is not a valid ONNX model (truncated or not a protobuf ModelProto: {e.Message})", e);
        }
        if (proto.Graph is null || proto.IrVersion <= 0 || proto.OpsetImport.Count == 0)
            throw new OnnxFormatException(bytes.Length == 0
                ? $"'{sourceName}' is empty, not an ONNX model"
                : $"'{sourceName}' is not an ONNX model (no graph, IR version or opset import)");
        if (proto.Graph.Output.Count == 0)
            throw new OnnxFormatException($"'{sourceName}' has a graph with no outputs; an ONNX model names at least one");
        return new Reader(externalDataDirectory, sourceName).ReadModel(proto);
    }

    private sealed class Reader(string? externalDataDirectory, string sourceName)
    {
        public Model ReadModel(ModelProto proto)
        {
            var origin = proto.Clone();
            origin.Graph = null;
            origin.OpsetImport.Clear();
            origin.MetadataProps.Clear();
            origin.ClearIrVersion();
            var model = new Model(ReadGraph(proto.Graph, owner: null), proto.IrVersion,
                proto.OpsetImport.Select(o => new OpsetImport(o.Domain, o.Version)))
            {
                Origin = origin,
                ProducerName = proto.ProducerName,
            };
            foreach (var kv in proto.MetadataProps) model.Metadata.Add(new(kv.Key, kv.Value));
            return model;
        }

        private Graph ReadGraph(GraphProto gp, Node? owner)
        {
            var g = new Graph(gp.Name) { OwnerNode = owner };
            var origin = gp.Clone();
            origin.Node.Clear();
            origin.Initializer.Clear();
            origin.Input.Clear();
            origin.Output.Clear();
            origin.ValueInfo.Clear();
            origin.ClearName();
            g.Origin = origin;

            foreach (var t in gp.Initializer)
            {
                if (g.Lookup(t.Name) is { } dup && ReferenceEquals(dup.Graph, g))
                    throw new OnnxFormatException($"'{sourceName}': initializer '{t.Name}' is defined twice in graph '{gp.Name}'");
                g.AddInitializer(t.Name, ReadTensor(t, $"initializer '{t.Name}'"));
            }
            foreach (var vi in gp.Input)
            {
                Value v;
                var existing = g.Initializers.FirstOrDefault(i => i.Name == vi.Name);
                if (existing is not null)
                {
                    g.AddInitializerAsInput(existing);
                    v = existing;
                }
                else
                {
                    v = Define(g, () => g.AddInput(vi.Name, null), vi.Name, "graph input");
                }
                ApplyValueInfo(v, vi);
            }

            // Phase 1 defines every node output, phase 2 wires inputs and reads attributes, so a
            // file whose nodes are not topologically sorted still loads (the writer sorts it).
            var nodes = new List<(Node node, NodeProto proto)>(gp.Node.Count);
            foreach (var np in gp.Node)
            {
                foreach (var o in np.Output)
                    if (o.Length > 0 && g.Lookup(o) is { } clash && ReferenceEquals(clash.Graph, g))
                        throw new OnnxFormatException($"'{sourceName}': value '{o}' is produced twice in graph '{gp.Name}' (second time by node '{np.Name}')");
                nodes.Add((g.AddNodeExact(np.OpType, np.Domain, np.Name, np.Output), np));
            }
            foreach (var (node, np) in nodes)
            {
                foreach (var name in np.Input)
                {
                    if (name.Length == 0) { node.AddInput(null); continue; }
                    var v = g.Lookup(name) ?? throw new OnnxFormatException(
                        $"'{sourceName}': node '{np.Name}' ({np.OpType}) reads '{name}', which no node, input or initializer defines");
                    node.AddInput(v);
                }
                foreach (var a in np.Attribute) node.SetAttribute(ReadAttribute(a, node));
                var nodeOrigin = np.Clone();
                nodeOrigin.Input.Clear();
                nodeOrigin.Output.Clear();
                nodeOrigin.Attribute.Clear();
                node.Origin = nodeOrigin;
            }

            foreach (var vi in gp.Output)
            {
                var v = g.Lookup(vi.Name) ?? throw new OnnxFormatException(
                    $"'{sourceName}': graph '{gp.Name}' output '{vi.Name}' is not produced by any node, input or initializer");
                g.AddOutput(v);
                if (ReferenceEquals(v.Graph, g) || v.Origin is null) ApplyValueInfo(v, vi);
            }
            foreach (var vi in gp.ValueInfo)
            {
                var v = g.Lookup(vi.Name);
                if (v is not null && ReferenceEquals(v.Graph, g) && v.Origin is null) ApplyValueInfo(v, vi);
                else origin.ValueInfo.Add(vi.Clone()); // annotation of nothing we know: keep it verbatim
            }
            return g;
        }

        private Value Define(Graph g, Func<Value> create, string name, string what)
        {
            if (g.Lookup(name) is { } dup && ReferenceEquals(dup.Graph, g))
                throw new OnnxFormatException($"'{sourceName}': {what} '{name}' is defined twice in graph '{g.Name}'");
            return create();
        }

        private static void ApplyValueInfo(Value v, ValueInfoProto vi)
        {
            if (ReadType(vi.Type) is { } type) v.Type = type;
            v.Origin = vi.Clone();
        }

        internal static TensorTypeInfo? ReadType(TypeProto? tp)
        {
            if (tp is null || tp.ValueCase != TypeProto.ValueOneofCase.TensorType) return null;
            var tt = tp.TensorType;
            IReadOnlyList<Dim>? shape = tt.Shape is null
                ? null
                : tt.Shape.Dim.Select(d => d.ValueCase switch
                {
                    TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue => Dim.Known(d.DimValue),
                    TensorShapeProto.Types.Dimension.ValueOneofCase.DimParam => Dim.Named(d.DimParam),
                    _ => Dim.Unknown,
                }).ToArray();
            return new TensorTypeInfo((Ir.DataType)tt.ElemType, shape);
        }

        private AttributeValue ReadAttribute(AttributeProto a, Node owner)
        {
            var kind = (AttributeKind)a.Type;
            if (kind == AttributeKind.Undefined) kind = InferKind(a);
            var origin = a.Clone();
            origin.ClearF(); origin.ClearI(); origin.ClearS(); origin.T = null; origin.G = null;
            origin.Floats.Clear(); origin.Ints.Clear(); origin.Strings.Clear(); origin.Tensors.Clear(); origin.Graphs.Clear();
            string where = $"attribute '{a.Name}' of node '{owner.Name}'";
            AttributeValue value = kind switch
            {
                AttributeKind.Float => AttributeValue.Float(a.Name, a.F),
                AttributeKind.Int => AttributeValue.Int(a.Name, a.I),
                AttributeKind.String => AttributeValue.Bytes(a.Name, a.S.ToByteArray()),
                AttributeKind.Tensor => AttributeValue.Tensor(a.Name, ReadTensor(a.T ?? throw Missing("tensor"), where)),
                AttributeKind.Graph => AttributeValue.Graph(a.Name, ReadGraph(a.G ?? throw Missing("graph"), owner)),
                AttributeKind.Floats => AttributeValue.Floats(a.Name, a.Floats),
                AttributeKind.Ints => AttributeValue.Ints(a.Name, a.Ints),
                AttributeKind.Strings => AttributeValue.Strings(a.Name, a.Strings.Select(s => s.ToByteArray())),
                AttributeKind.Tensors => AttributeValue.Tensors(a.Name, a.Tensors.Select(t => ReadTensor(t, where))),
                AttributeKind.Graphs => AttributeValue.Graphs(a.Name, a.Graphs.Select(sg => ReadGraph(sg, owner))),
                _ => AttributeValue.Opaque(a.Name, kind, a.Clone()),
            };
            value.Origin ??= origin;
            return value;

            OnnxFormatException Missing(string payload) =>
                new($"'{sourceName}': {where} is typed {kind.ToString().ToUpperInvariant()} but holds no {payload}");
        }

        /// <summary>Files written before ONNX made <c>type</c> required omit it; the payload tells.</summary>
        private static AttributeKind InferKind(AttributeProto a) =>
            a.Floats.Count > 0 ? AttributeKind.Floats
            : a.Ints.Count > 0 ? AttributeKind.Ints
            : a.Strings.Count > 0 ? AttributeKind.Strings
            : a.Tensors.Count > 0 ? AttributeKind.Tensors
            : a.Graphs.Count > 0 ? AttributeKind.Graphs
            : a.HasF ? AttributeKind.Float
            : a.HasI ? AttributeKind.Int
            : a.HasS ? AttributeKind.String
            : a.T is not null ? AttributeKind.Tensor
            : a.G is not null ? AttributeKind.Graph
            : AttributeKind.Undefined;

        private Tensor ReadTensor(TensorProto t, string what)
        {
            var type = (Ir.DataType)t.DataType;
            var dims = t.Dims.ToArray();
            long count;
            try { count = Tensor.CountOf(dims); }
            catch (ArgumentException e) { throw new OnnxFormatException($"'{sourceName}': {what} is malformed: {e.Message}", e); }
            var origin = t.Clone();
            origin.Dims.Clear(); origin.ClearDataType(); // the name stays: attribute tensors keep theirs, initializers get the value's
            origin.ClearRawData(); origin.FloatData.Clear(); origin.Int32Data.Clear(); origin.StringData.Clear();
            origin.Int64Data.Clear(); origin.DoubleData.Clear(); origin.Uint64Data.Clear();
            origin.ExternalData.Clear(); origin.ClearDataLocation();
            try
            {
                if (type == Ir.DataType.String)
                    return Attach(Tensor.FromStrings(dims, t.StringData.Select(s => s.ToByteArray()).ToArray()), origin);
                ReadOnlyMemory<byte> raw;
                if (t.HasDataLocation && t.DataLocation == TensorProto.Types.DataLocation.External)
                    raw = ReadExternal(t, what, type.RawByteCount(count));
                else if (t.HasRawData)
                    raw = t.RawData.Memory;
                else
                    raw = TypedFieldsToRaw(t, type, count, what);
                return Attach(Tensor.FromRaw(type, dims, raw), origin);
            }
            catch (ArgumentException e)
            {
                throw new OnnxFormatException($"'{sourceName}': {what} is malformed: {e.Message}", e);
            }
        }

        private static Tensor Attach(Tensor t, TensorProto origin)
        {
            t.Origin = origin;
            return t;
        }

        /// <summary>Bytes read so far from each external file (by its real path): regions of one file
        /// never overlap in a real model, so tensors claiming more than the file holds are refused
        /// instead of multiplying one region in memory.</summary>
        private readonly Dictionary<string, long> _externalBytesRead = new(StringComparer.Ordinal);

        private ReadOnlyMemory<byte> ReadExternal(TensorProto t, string what, long expectedBytes)
        {
            string? location = null;
            long offset = 0, length = -1;
            long Number(string key, string text) =>
                long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v)
                    ? v : throw new OnnxFormatException($"'{sourceName}': {what} has external {key} '{text}', not a non-negative integer");
            foreach (var kv in t.ExternalData)
            {
                switch (kv.Key)
                {
                    case "location": location = kv.Value; break;
                    case "offset": offset = Number("offset", kv.Value); break;
                    case "length": length = Number("length", kv.Value); break;
                }
            }
            if (location is null) throw new OnnxFormatException($"'{sourceName}': {what} is external but names no location");
            if (externalDataDirectory is null)
                throw new OnnxFormatException($"'{sourceName}': {what} is stored in external file '{location}', but the model was not loaded from a file");
            if (Path.IsPathRooted(location) || location.Split('/', '\\').Contains(".."))
                throw new OnnxFormatException($"'{sourceName}': {what} has external location '{location}' outside the model's folder");
            string file = Path.Combine(externalDataDirectory, location);
            if (!File.Exists(file))
                throw new OnnxFormatException($"'{sourceName}': external data file '{file}' for {what} does not exist");
            if (length < 0) length = expectedBytes;
            if (length != expectedBytes)
                throw new OnnxFormatException($"'{sourceName}': {what} has {length} external bytes, its shape needs {expectedBytes}");
            using var handle = File.OpenHandle(file);
            // The file actually opened, links resolved, must lie in the model's real folder: a link
            // placed beside the model must not pull any file of the machine into the output.
            string real = RealPath(handle, file);
            string folder = Path.TrimEndingDirectorySeparator(RealFolder(externalDataDirectory)) + Path.DirectorySeparatorChar;
            if (!real.StartsWith(folder, StringComparison.Ordinal))
                throw new OnnxFormatException($"'{sourceName}': external data file '{file}' of {what} is '{real}', outside the model's folder");
            long fileLength = RandomAccess.GetLength(handle);
            if (offset > fileLength || length > fileLength - offset)
                throw new OnnxFormatException($"'{sourceName}': {what} reads {length} bytes at offset {offset} of '{file}', which has {fileLength}");
            long total = _externalBytesRead.GetValueOrDefault(real) + length;
            if (total > fileLength)
                throw new OnnxFormatException($"'{sourceName}': the tensors stored in '{file}' claim {total} bytes of its {fileLength} (overlapping regions; {what} is one)");
            _externalBytesRead[real] = total;
            var buffer = new byte[length];
            int read = 0;
            while (read < length)
            {
                int n = RandomAccess.Read(handle, buffer.AsSpan(read), offset + read);
                if (n == 0) throw new OnnxFormatException($"'{sourceName}': external data file '{file}' ended early");
                read += n;
            }
            return buffer;
        }

        /// <summary>The path of the file <paramref name="handle"/> has open, from the kernel where it can
        /// say (Linux: /proc/self/fd), else realpath(3) of the path.</summary>
        private static string RealPath(Microsoft.Win32.SafeHandles.SafeFileHandle handle, string path)
        {
            if (OperatingSystem.IsLinux() && new FileInfo($"/proc/self/fd/{handle.DangerousGetHandle()}").LinkTarget is { } target) return target;
            return RealPaths.Of(path);
        }

        private static string RealFolder(string folder) => RealPaths.Of(folder);

        /// <summary>Typed repeated fields (float_data, int32_data...) re-encoded as raw bytes.</summary>
        private ReadOnlyMemory<byte> TypedFieldsToRaw(TensorProto t, Ir.DataType type, long count, string what)
        {
            // The values present bound the buffer: a shape claiming billions of elements over an
            // empty field is refused before anything is allocated.
            int available = type switch
            {
                Ir.DataType.Float or Ir.DataType.Complex64 => t.FloatData.Count,
                Ir.DataType.Double or Ir.DataType.Complex128 => t.DoubleData.Count,
                Ir.DataType.Int64 => t.Int64Data.Count,
                Ir.DataType.UInt32 or Ir.DataType.UInt64 => t.Uint64Data.Count,
                Ir.DataType.Int32 or Ir.DataType.Int16 or Ir.DataType.UInt16 or Ir.DataType.Float16 or Ir.DataType.BFloat16
                    or Ir.DataType.Int8 or Ir.DataType.UInt8 or Ir.DataType.Bool or Ir.DataType.Float8E4M3FN
                    or Ir.DataType.Float8E4M3FNUZ or Ir.DataType.Float8E5M2 or Ir.DataType.Float8E5M2FNUZ => t.Int32Data.Count,
                _ => throw new OnnxFormatException($"'{sourceName}': {what} stores {type.OnnxName()} in typed fields, which this reader does not decode"),
            };
            long needed = type is Ir.DataType.Complex64 or Ir.DataType.Complex128 ? 2 * count : count;
            if (available != needed)
                throw new OnnxFormatException($"'{sourceName}': {what} has {available} values, its shape needs {needed}");
            int n = (int)count;
            byte[] raw = new byte[type.RawByteCount(count)];
            var span = raw.AsSpan();
            switch (type)
            {
                case Ir.DataType.Float or Ir.DataType.Complex64: // a complex number is two floats
                {
                    int m = type == Ir.DataType.Complex64 ? 2 * n : n;
                    for (int i = 0; i < m; i++) System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(span[(4 * i)..], t.FloatData[i]);
                    break;
                }
                case Ir.DataType.Double or Ir.DataType.Complex128:
                {
                    int m = type == Ir.DataType.Complex128 ? 2 * n : n;
                    for (int i = 0; i < m; i++) System.Buffers.Binary.BinaryPrimitives.WriteDoubleLittleEndian(span[(8 * i)..], t.DoubleData[i]);
                    break;
                }
                case Ir.DataType.Int64:
                    for (int i = 0; i < n; i++) System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(span[(8 * i)..], t.Int64Data[i]);
                    break;
                case Ir.DataType.UInt32 or Ir.DataType.UInt64:
                    for (int i = 0; i < n; i++)
                        if (type == Ir.DataType.UInt32) System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(span[(4 * i)..], (uint)t.Uint64Data[i]);
                        else System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(span[(8 * i)..], t.Uint64Data[i]);
                    break;
                case Ir.DataType.Int32:
                    for (int i = 0; i < n; i++) System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(span[(4 * i)..], t.Int32Data[i]);
                    break;
                case Ir.DataType.Int16 or Ir.DataType.UInt16 or Ir.DataType.Float16 or Ir.DataType.BFloat16:
                    for (int i = 0; i < n; i++) System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(span[(2 * i)..], (ushort)t.Int32Data[i]);
                    break;
                case Ir.DataType.Int8 or Ir.DataType.UInt8 or Ir.DataType.Bool or Ir.DataType.Float8E4M3FN
                    or Ir.DataType.Float8E4M3FNUZ or Ir.DataType.Float8E5M2 or Ir.DataType.Float8E5M2FNUZ:
                    for (int i = 0; i < n; i++) raw[i] = (byte)t.Int32Data[i];
                    break;
            }
            return raw;
        }
    }
}
