using System.Globalization;
using Google.Protobuf;
using Onnx;
using OnnxViTQ.Analysis;
using OnnxViTQ.Ir;

namespace OnnxViTQ.Serialization;

internal sealed record OnnxWriteOptions
{
    public ExternalDataMode ExternalData { get; init; } = ExternalDataMode.Auto;

    /// <summary>Tensors smaller than this stay inline even when external data is used.</summary>
    public long ExternalMinBytes { get; init; } = 1024;

    /// <summary>Total tensor bytes above which <see cref="ExternalDataMode.Auto"/> goes external:
    /// protobuf messages cannot exceed 2 GiB, and the graph itself needs room.</summary>
    public long AutoExternalThresholdBytes { get; init; } = 2L * 1024 * 1024 * 1024 - 64L * 1024 * 1024;
}

/// <summary>Writes the IR back to an ONNX ModelProto: each object's <c>Origin</c> message with
/// the modelled fields filled in from the IR; nodes in topological order.</summary>
internal static class OnnxModelWriter
{
    /// <summary>
    /// Saves atomically. With external data, tensors go to "&lt;file name&gt;.&lt;content hash&gt;.data"
    /// beside the model: a name no earlier write used for other bytes, so renaming it into place
    /// cannot change what an existing model reads. The model is renamed last (the switch), then the
    /// data files of earlier writes to this path are removed. A crash at any point leaves a model
    /// whose data file holds its own bytes.
    /// </summary>
    public static void Save(Model model, string path, OnnxWriteOptions? options = null)
    {
        options ??= new OnnxWriteOptions();
        bool external = options.ExternalData switch
        {
            ExternalDataMode.Always => true,
            ExternalDataMode.Never => false,
            _ => TotalTensorBytes(model) > options.AutoExternalThresholdBytes,
        };
        if (!external)
        {
            var proto = new Writer(null).WriteModel(model);
            AtomicFile.Write(path, s => proto.WriteTo(s));
            return;
        }
        var sink = new ExternalSink(options.ExternalMinBytes);
        var modelProto = new Writer(sink).WriteModel(model);
        string dataName = $"{Path.GetFileName(path)}.{sink.ContentHash()}.data";
        sink.Name(dataName);
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        AtomicFile.WriteAll([
            (Path.Combine(folder, dataName), sink.WriteTo),
            (path, s => modelProto.WriteTo(s)),
        ]);
        foreach (var stale in ExternalDataFiles.Of(path).Where(f => Path.GetFileName(f) != dataName)) File.Delete(stale);
    }

    /// <summary>The model as inline protobuf bytes (for ONNX Runtime sessions and tests).
    /// <paramref name="extraOutputs"/> are exposed as additional graph outputs in the bytes only
    /// (the IR is not changed): that is how activations are captured. They are declared with
    /// their element type and no shape, so ONNX Runtime infers it. With
    /// <paramref name="onlyExtraOutputs"/> they are the only graph outputs, so a runtime computes
    /// nothing they do not depend on.</summary>
    public static byte[] ToBytes(Model model, IEnumerable<Value>? extraOutputs = null, bool onlyExtraOutputs = false)
    {
        if (TotalTensorBytes(model) > new OnnxWriteOptions().AutoExternalThresholdBytes)
            throw new OnnxViTQException("model is too large to serialize inline (over 2 GiB); save it to a file with external data");
        var proto = new Writer(null).WriteModel(model);
        if (onlyExtraOutputs) proto.Graph.Output.Clear();
        var existing = proto.Graph.Output.Select(o => o.Name).ToHashSet();
        foreach (var v in extraOutputs ?? [])
        {
            if (!ReferenceEquals(v.Graph, model.Graph)) throw new ArgumentException($"'{v.Name}' is not a value of the main graph");
            if (!existing.Add(v.Name)) continue;
            proto.Graph.Output.Add(new ValueInfoProto
            {
                Name = v.Name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)(v.Type?.ElementType ?? Ir.DataType.Float) } },
            });
        }
        return proto.ToByteArray();
    }

    public static long TotalTensorBytes(Model model) =>
        model.AllGraphs().Sum(g =>
            g.Initializers.Sum(v => TensorBytes(v.Initializer!)) +
            g.Nodes.SelectMany(n => n.Attributes).Sum(a => a.Kind switch
            {
                AttributeKind.Tensor => TensorBytes(a.AsTensor()),
                AttributeKind.Tensors => a.AsTensors().Sum(TensorBytes),
                _ => 0L,
            }));

    private static long TensorBytes(Tensor t) =>
        t.DataType == Ir.DataType.String ? t.Strings.Sum(s => (long)s.Length) : t.RawBytes.Length;

    /// <summary>Collects external tensor bytes in write order (4 KiB aligned, as ONNX's own
    /// writer does, so they can be memory-mapped).</summary>
    private sealed class ExternalSink(long minBytes)
    {
        private readonly List<(long Offset, ReadOnlyMemory<byte> Data)> _chunks = [];
        private readonly List<StringStringEntryProto> _locations = [];
        private long _end;

        /// <summary>16 hex digits of the SHA-256 of the data file's bytes (layout included).</summary>
        public string ContentHash()
        {
            using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
            long position = 0;
            foreach (var (offset, data) in _chunks)
            {
                if (offset > position) hash.AppendData(new byte[offset - position]);
                hash.AppendData(data.Span);
                position = offset + data.Length;
            }
            return Convert.ToHexStringLower(hash.GetHashAndReset())[..16];
        }

        /// <summary>Sets the file name every placed tensor's location names.</summary>
        public void Name(string location)
        {
            foreach (var entry in _locations) entry.Value = location;
        }

        public bool Accepts(Tensor t) => t.DataType != Ir.DataType.String && t.RawBytes.Length >= minBytes;

        public void Place(TensorProto proto, Tensor t)
        {
            long offset = (_end + 4095) / 4096 * 4096;
            _chunks.Add((offset, t.RawMemory));
            _end = offset + t.RawBytes.Length;
            proto.DataLocation = TensorProto.Types.DataLocation.External;
            var entry = new StringStringEntryProto { Key = "location", Value = "" };
            _locations.Add(entry);
            proto.ExternalData.Add(entry);
            proto.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(CultureInfo.InvariantCulture) });
            proto.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = t.RawBytes.Length.ToString(CultureInfo.InvariantCulture) });
        }

        public void WriteTo(Stream stream)
        {
            long position = 0;
            foreach (var (offset, data) in _chunks)
            {
                if (offset > position) stream.Write(new byte[offset - position]);
                stream.Write(data.Span);
                position = offset + data.Length;
            }
        }
    }

    private sealed class Writer(ExternalSink? sink)
    {
        public ModelProto WriteModel(Model model)
        {
            var p = (model.Origin as ModelProto)?.Clone() ?? new ModelProto();
            p.IrVersion = model.IrVersion;
            p.OpsetImport.Clear();
            foreach (var o in model.OpsetImports) p.OpsetImport.Add(new OperatorSetIdProto { Domain = o.Domain, Version = o.Version });
            p.MetadataProps.Clear();
            foreach (var kv in model.Metadata) p.MetadataProps.Add(new StringStringEntryProto { Key = kv.Key, Value = kv.Value });
            p.Graph = WriteGraph(model.Graph);
            return p;
        }

        private GraphProto WriteGraph(Graph g)
        {
            var p = (g.Origin as GraphProto)?.Clone() ?? new GraphProto();
            var keptValueInfo = p.ValueInfo.ToList();
            p.ValueInfo.Clear();
            p.Name = g.Name;
            foreach (var init in g.Initializers) p.Initializer.Add(WriteTensor(init.Initializer!, init.Name));
            foreach (var v in g.Inputs) p.Input.Add(WriteValueInfo(v));
            var order = GraphTopology.TopologicalOrder(g);
            foreach (var n in order) p.Node.Add(WriteNode(n));
            foreach (var v in g.Outputs) p.Output.Add(WriteValueInfo(v));
            foreach (var n in order)
                foreach (var v in n.Outputs)
                    if (v is not null && !v.IsGraphOutput && (v.Type is not null || v.Origin is not null))
                        p.ValueInfo.Add(WriteValueInfo(v));
            p.ValueInfo.AddRange(keptValueInfo);
            return p;
        }

        /// <summary>
        /// Nodes written with trailing absent inputs left out rather than named "" (the same model:
        /// ONNX allows both). Only LayerNormalization: ONNX Runtime 1.32 crashes the process (a
        /// segfault while it optimizes the session, found by the fuzz harness) on one whose bias is
        /// named ""; every other node is written as read.
        /// </summary>
        private static bool OmitsTrailingAbsentInputs(Node n) => n.OpType == "LayerNormalization" && n.Domain is "" or "ai.onnx";

        private NodeProto WriteNode(Node n)
        {
            var p = (n.Origin as NodeProto)?.Clone() ?? new NodeProto();
            if (n.Name.Length > 0 || p.HasName) p.Name = n.Name;
            p.OpType = n.OpType;
            if (n.Domain.Length > 0 || p.HasDomain) p.Domain = n.Domain;
            int inputs = n.Inputs.Count;
            if (OmitsTrailingAbsentInputs(n))
                while (inputs > 0 && n.Inputs[inputs - 1] is null) inputs--;
            for (int i = 0; i < inputs; i++) p.Input.Add(n.Inputs[i]?.Name ?? "");
            foreach (var v in n.Outputs) p.Output.Add(v?.Name ?? "");
            foreach (var a in n.Attributes) p.Attribute.Add(WriteAttribute(a));
            return p;
        }

        private AttributeProto WriteAttribute(AttributeValue a)
        {
            var p = (a.Origin as AttributeProto)?.Clone() ?? new AttributeProto();
            p.Name = a.Name;
            p.Type = (AttributeProto.Types.AttributeType)a.Kind;
            switch (a.Kind)
            {
                case AttributeKind.Float: p.F = a.AsFloat(); break;
                case AttributeKind.Int: p.I = a.AsInt(); break;
                case AttributeKind.String: p.S = ByteString.CopyFrom(a.AsBytes()); break;
                case AttributeKind.Tensor: p.T = WriteTensor(a.AsTensor(), null); break;
                case AttributeKind.Graph: p.G = WriteGraph(a.AsGraph()); break;
                case AttributeKind.Floats: p.Floats.Add(a.AsFloats()); break;
                case AttributeKind.Ints: p.Ints.Add(a.AsInts()); break;
                case AttributeKind.Strings: p.Strings.Add(a.AsStrings().Select(ByteString.CopyFrom)); break;
                case AttributeKind.Tensors: p.Tensors.Add(a.AsTensors().Select(t => WriteTensor(t, null))); break;
                case AttributeKind.Graphs: p.Graphs.Add(a.AsGraphs().Select(WriteGraph)); break;
                default: break; // opaque: the origin already holds the payload
            }
            return p;
        }

        private TensorProto WriteTensor(Tensor t, string? name)
        {
            var p = (t.Origin as TensorProto)?.Clone() ?? new TensorProto();
            if (name is not null) p.Name = name;
            p.DataType = (int)t.DataType;
            p.Dims.Add(t.Dims);
            if (t.DataType == Ir.DataType.String)
                p.StringData.Add(t.Strings.Select(ByteString.CopyFrom));
            else if (name is not null && sink is not null && sink.Accepts(t))
                sink.Place(p, t);
            else
                p.RawData = UnsafeByteOperations.UnsafeWrap(t.RawMemory);
            return p;
        }

        private static ValueInfoProto WriteValueInfo(Value v)
        {
            var p = (v.Origin as ValueInfoProto)?.Clone() ?? new ValueInfoProto();
            p.Name = v.Name;
            if (v.Type is { } type)
            {
                if (p.Type?.ValueCase != TypeProto.ValueOneofCase.TensorType) p.Type = new TypeProto { TensorType = new TypeProto.Types.Tensor() };
                var tt = p.Type.TensorType;
                tt.ElemType = (int)type.ElementType;
                if (type.Shape is null)
                {
                    tt.Shape = null;
                }
                else
                {
                    var old = tt.Shape?.Dim.ToList() ?? [];
                    tt.Shape = new TensorShapeProto();
                    for (int i = 0; i < type.Shape.Count; i++)
                    {
                        // keep a dimension's denotation when the rank is unchanged
                        var d = i < old.Count && old.Count == type.Shape.Count ? old[i].Clone() : new TensorShapeProto.Types.Dimension();
                        d.ClearValue();
                        if (type.Shape[i].Size is { } size) d.DimValue = size;
                        else if (type.Shape[i].Symbol is { } sym) d.DimParam = sym;
                        tt.Shape.Dim.Add(d);
                    }
                }
            }
            return p;
        }
    }
}
