using Google.Protobuf;
using Onnx;

namespace OnnxViTQ.Fuzz;

/// <summary>One mutated model: its bytes and what was done to it (enough to reproduce it with the seed).</summary>
internal sealed record Mutant(int Seed, string Origin, string Description, byte[] Bytes);

/// <summary>
/// Deterministic mutations of a model file, for the fuzz harness: byte edits aimed at the file's
/// structure (the weights' raw bytes, most of a file, are skipped: any value there is a valid
/// model), and edits of the parsed proto that a hostile or broken exporter could write — hostile
/// dimensions, element types and attributes, dangling, cyclic and duplicate names, opsets, input
/// shapes, external-data entries, metadata, and the attributes and weights of <c>com.onnxvitq</c>
/// nodes. The same (origin, seed) always gives the same mutant.
/// </summary>
internal sealed class ModelMutator
{
    private static readonly long[] HostileInts = [long.MinValue, -(1L << 40), -2, -1, 0, 1, 3, 255, 65537, 1L << 31, 1L << 32, (1L << 40) + 4, 1L << 60, long.MaxValue];
    private static readonly float[] HostileFloats = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0f, -1f, 1e-45f, 1e38f];
    private static readonly string[] OpTypes =
        ["MatMul", "Gemm", "Add", "Mul", "Softmax", "LayerNormalization", "Reshape", "Transpose", "Conv", "Gelu", "Erf", "Slice", "Concat", "Gather",
         "Identity", "QuantizeLinear", "DequantizeLinear", "If", "Loop", "Split", "Squeeze", "Unsqueeze", "ReduceMean", "Where", "NoSuchOp"];
    private static readonly string[] AttributeNames =
        ["axis", "axes", "perm", "epsilon", "group", "kernel_shape", "strides", "pads", "dilations", "transA", "transB", "alpha", "beta",
         "to", "keepdims", "approximate", "allowzero", "split", "k", "n", "heads", "bits", "act_bits", "mode", "then_branch", "body", "value"];

    private readonly string _origin;
    private readonly byte[] _original;
    private readonly (int Start, int Length)[] _weightSpans;

    public ModelMutator(string origin, byte[] model)
    {
        _origin = origin;
        _original = model;
        var proto = ModelProto.Parser.ParseFrom(model);
        // Where each large raw tensor lies in the file: those bytes are values, not structure.
        var spans = new List<(int, int)>();
        foreach (var t in proto.Graph.Initializer.Where(t => t.RawData.Length >= 256))
        {
            int at = model.AsSpan().IndexOf(t.RawData.Span);
            if (at >= 0) spans.Add((at, t.RawData.Length));
        }
        _weightSpans = [.. spans.OrderBy(s => s.Item1)];
    }

    public Mutant Mutate(int seed)
    {
        var r = new Random(seed);
        var edits = new List<string>();
        byte[] bytes;
        if (r.Next(4) == 0)
            bytes = ByteEdit(r, (byte[])_original.Clone(), edits);
        else
        {
            var proto = ModelProto.Parser.ParseFrom(_original);
            int count = 1 + (r.Next(3) == 0 ? r.Next(3) : 0);
            for (int i = 0; i < count; i++) StructuralEdit(r, proto, edits);
            bytes = proto.ToByteArray();
        }
        return new Mutant(seed, _origin, string.Join("; ", edits), bytes);
    }

    private int StructurePosition(Random r, int length)
    {
        for (int attempt = 0; attempt < 64; attempt++)
        {
            int p = r.Next(length);
            if (!_weightSpans.Any(s => p >= s.Start && p < s.Start + s.Length)) return p;
        }
        return r.Next(length);
    }

    private byte[] ByteEdit(Random r, byte[] b, List<string> edits)
    {
        switch (r.Next(5))
        {
            case 0:
            {
                int n = 1 + r.Next(4);
                for (int i = 0; i < n; i++)
                {
                    int p = StructurePosition(r, b.Length);
                    b[p] ^= (byte)(1 + r.Next(255));
                }
                edits.Add($"{n} structure byte(s) flipped");
                return b;
            }
            case 1:
            {
                int cut = r.Next(b.Length);
                edits.Add($"truncated to {cut} bytes");
                return b[..cut];
            }
            case 2:
            {
                int p = StructurePosition(r, b.Length), n = 1 + r.Next(10);
                for (int i = 0; i < n && p + i < b.Length; i++) b[p + i] = 0xFF;
                edits.Add($"{n} bytes at {p} set to 0xFF (a hostile varint)");
                return b;
            }
            case 3:
            {
                int p = StructurePosition(r, b.Length), n = 1 + r.Next(Math.Min(64, b.Length - p));
                edits.Add($"{n} bytes removed at {p}");
                return [.. b[..p], .. b[(p + n)..]];
            }
            default:
            {
                int p = StructurePosition(r, b.Length), n = 1 + r.Next(Math.Min(64, b.Length - p));
                edits.Add($"{n} bytes at {p} repeated");
                return [.. b[..(p + n)], .. b[p..]];
            }
        }
    }

    private static T Pick<T>(Random r, IReadOnlyList<T> items) => items[r.Next(items.Count)];

    private void StructuralEdit(Random r, ModelProto m, List<string> edits)
    {
        var g = m.Graph;
        var native = g.Node.Where(n => n.Domain == "com.onnxvitq").ToList();
        int kind = native.Count > 0 && r.Next(2) == 0 ? 100 : r.Next(16);
        switch (kind)
        {
            case 0 when g.Initializer.Count > 0:
            {
                var t = Pick(r, g.Initializer);
                if (t.Dims.Count == 0) t.Dims.Add(1);
                int i = r.Next(t.Dims.Count);
                long v = r.Next(3) == 0 ? t.Dims[i] + 1 : Pick(r, HostileInts);
                t.Dims[i] = v;
                edits.Add($"initializer '{t.Name}' dim {i} = {v}");
                break;
            }
            case 1 when g.Initializer.Count > 0:
            {
                var t = Pick(r, g.Initializer);
                int type = r.Next(27);
                t.DataType = type;
                edits.Add($"initializer '{t.Name}' data_type = {type}");
                break;
            }
            case 2 when g.Initializer.Count > 0:
            {
                var t = Pick(r, g.Initializer);
                g.Initializer.Remove(t);
                edits.Add($"initializer '{t.Name}' removed");
                break;
            }
            case 3 when g.Node.Count > 0:
            {
                var n = Pick(r, g.Node);
                g.Node.Remove(n);
                edits.Add($"node '{n.Name}' removed");
                break;
            }
            case 4 when g.Node.Count > 0:
            {
                var n = Pick(r, g.Node);
                if (n.Input.Count == 0) n.Input.Add("");
                int i = r.Next(n.Input.Count);
                var names = g.Node.SelectMany(x => x.Output).Concat(g.Input.Select(v => v.Name)).Concat(g.Initializer.Select(t => t.Name)).ToList();
                string to = r.Next(4) switch { 0 => "no_such_value", 1 => n.Output.FirstOrDefault() ?? "", 2 => "", _ => Pick(r, names) };
                n.Input[i] = to;
                edits.Add($"node '{n.Name}' input {i} = '{to}'");
                break;
            }
            case 5 when g.Node.Count > 0:
            {
                var n = Pick(r, g.Node);
                string op = Pick(r, OpTypes);
                edits.Add($"node '{n.Name}' op {n.OpType} -> {op}");
                n.OpType = op;
                break;
            }
            case 6 when g.Node.Count > 0:
            {
                var n = Pick(r, g.Node);
                HostileAttribute(r, n, edits);
                break;
            }
            case 7 when g.Input.Count > 0:
            {
                var input = Pick(r, g.Input);
                var shape = input.Type?.TensorType?.Shape;
                if (shape is null) { edits.Add($"input '{input.Name}' has no shape to edit"); break; }
                switch (r.Next(4))
                {
                    case 0 when shape.Dim.Count > 0:
                    {
                        int i = r.Next(shape.Dim.Count);
                        long v = Pick(r, HostileInts);
                        shape.Dim[i] = new TensorShapeProto.Types.Dimension { DimValue = v };
                        edits.Add($"input '{input.Name}' dim {i} = {v}");
                        break;
                    }
                    case 1 when shape.Dim.Count > 0:
                    {
                        int i = r.Next(shape.Dim.Count);
                        shape.Dim[i] = new TensorShapeProto.Types.Dimension { DimParam = "dynamic_" + i };
                        edits.Add($"input '{input.Name}' dim {i} made dynamic");
                        break;
                    }
                    case 2:
                        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = 1 });
                        edits.Add($"input '{input.Name}' rank + 1");
                        break;
                    default:
                        input.Type!.TensorType.ElemType = r.Next(27);
                        edits.Add($"input '{input.Name}' elem_type = {input.Type.TensorType.ElemType}");
                        break;
                }
                break;
            }
            case 8:
            {
                var opset = m.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx");
                long v = Pick(r, new long[] { 1, 6, 7, 9, 11, 12, 13, 17, 18, 21, 22, 30, 1000, -1 });
                if (opset is not null) opset.Version = v;
                edits.Add($"default opset = {v}");
                break;
            }
            case 9 when g.Node.Count > 1:
            {
                var a = Pick(r, g.Node);
                var b = Pick(r, g.Node);
                if (a.Output.Count > 0 && b.Output.Count > 0)
                {
                    a.Output[0] = b.Output[0];
                    edits.Add($"node '{a.Name}' output renamed to '{b.Output[0]}' (duplicate)");
                }
                break;
            }
            case 10:
                if (r.Next(2) == 0) { g.Output.Clear(); edits.Add("graph outputs cleared"); }
                else { g.Output.Add(new ValueInfoProto { Name = "no_such_output" }); edits.Add("graph output 'no_such_output' added"); }
                break;
            case 11 when g.Initializer.Count > 0:
            {
                var t = Pick(r, g.Initializer);
                t.ClearRawData();
                t.DataLocation = TensorProto.Types.DataLocation.External;
                string location = Pick(r, new[] { "w.data", "../w.data", "/etc/passwd", "", "model.onnx", "a/../../b" });
                t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
                string offset = Pick(r, new[] { "0", "-1", "18446744073709551615", "x", "9223372036854775807" });
                t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset });
                edits.Add($"initializer '{t.Name}' external at '{location}' offset {offset}");
                break;
            }
            case 12:
                m.IrVersion = Pick(r, new long[] { -1, 0, 1, 3, 7, 10, 11, 100 });
                edits.Add($"ir_version = {m.IrVersion}");
                break;
            case 13:
            {
                string key = Pick(r, new[] { "onnxvitq.preprocess.crop_pct", "onnxvitq.preprocess.mean", "onnxvitq.preprocess.std", "onnxvitq.preprocess.channels" });
                string value = Pick(r, new[] { "0", "-1", "1e30", "NaN", "", "0.5,0.5", "1,2,3,4,5", "x" });
                m.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
                edits.Add($"metadata {key} = '{value}'");
                break;
            }
            case 14 when g.Initializer.Count > 0:
            {
                var t = Pick(r, g.Initializer);
                var raw = t.RawData.ToByteArray();
                int keep = raw.Length == 0 ? 0 : r.Next(raw.Length);
                t.RawData = ByteString.CopyFrom(raw, 0, keep);
                edits.Add($"initializer '{t.Name}' raw data cut to {keep} of {raw.Length} bytes");
                break;
            }
            case 15 when g.Node.Count > 0:
            {
                // A node feeding on its own output, or two nodes feeding on each other.
                var n = Pick(r, g.Node);
                if (n.Input.Count > 0 && n.Output.Count > 0)
                {
                    n.Input[0] = n.Output[0];
                    edits.Add($"node '{n.Name}' consumes its own output (a cycle)");
                }
                break;
            }
            case 100:
            {
                var n = Pick(r, native);
                if (r.Next(3) == 0 && n.Input.Count > 1)
                {
                    var weightName = Pick(r, n.Input.Skip(1).Where(i => i.Length > 0).ToList() is { Count: > 0 } l ? l : [n.Input[0]]);
                    var t = g.Initializer.FirstOrDefault(x => x.Name == weightName);
                    if (t is not null && t.Dims.Count > 0)
                    {
                        int i = r.Next(t.Dims.Count);
                        long v = r.Next(2) == 0 ? t.Dims[i] * 2 : Pick(r, HostileInts);
                        t.Dims[i] = v;
                        edits.Add($"native node '{n.Name}' input '{t.Name}' dim {i} = {v}");
                        break;
                    }
                }
                HostileAttribute(r, n, edits, preferOwn: true);
                break;
            }
            default:
                edits.Add("no-op edit (nothing to edit of that kind)");
                break;
        }
    }

    private static void HostileAttribute(Random r, NodeProto n, List<string> edits, bool preferOwn = false)
    {
        AttributeProto a;
        if (n.Attribute.Count > 0 && (preferOwn || r.Next(2) == 0)) a = Pick(r, n.Attribute);
        else
        {
            a = new AttributeProto { Name = Pick(r, AttributeNames) };
            n.Attribute.Add(a);
        }
        var type = r.Next(4) == 0 ? (AttributeProto.Types.AttributeType)r.Next(1, 15) : a.Type;
        a.ClearF(); a.ClearI(); a.ClearS(); a.T = null; a.G = null;
        a.Floats.Clear(); a.Ints.Clear(); a.Strings.Clear(); a.Tensors.Clear(); a.Graphs.Clear();
        a.Type = type;
        string value;
        switch (type)
        {
            case AttributeProto.Types.AttributeType.Float: a.F = Pick(r, HostileFloats); value = a.F.ToString(); break;
            case AttributeProto.Types.AttributeType.Ints:
            {
                int count = Pick(r, new[] { 0, 1, 2, 4, 7, 100 });
                for (int i = 0; i < count; i++) a.Ints.Add(Pick(r, HostileInts));
                value = $"[{string.Join(",", a.Ints)}]";
                break;
            }
            case AttributeProto.Types.AttributeType.Floats:
            {
                int count = Pick(r, new[] { 0, 1, 3, 100 });
                for (int i = 0; i < count; i++) a.Floats.Add(Pick(r, HostileFloats));
                value = $"{count} floats";
                break;
            }
            case AttributeProto.Types.AttributeType.String: a.S = ByteString.CopyFromUtf8(Pick(r, new[] { "", "NOTSET", "tanh", "per_token", "\u0000", new string('x', 1000) })); value = $"'{a.S.ToStringUtf8()[..Math.Min(8, a.S.Length)]}'"; break;
            case AttributeProto.Types.AttributeType.Tensor:
                if (r.Next(2) == 0) a.T = new TensorProto { DataType = r.Next(27), Dims = { Pick(r, HostileInts) } };
                value = a.T is null ? "no tensor" : "hostile tensor";
                break;
            case AttributeProto.Types.AttributeType.Graph:
                if (r.Next(2) == 0) a.G = new GraphProto { Name = "empty" };
                value = a.G is null ? "no graph" : "empty graph";
                break;
            default:
                a.Type = AttributeProto.Types.AttributeType.Int;
                a.I = Pick(r, HostileInts);
                value = a.I.ToString();
                break;
        }
        edits.Add($"node '{n.Name}' attribute {a.Name} ({a.Type}) = {value}");
    }
}
