using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// Portable emitter: writes the plan's uniform quantizers as standard ONNX.
/// Weight W: <c>DequantizeLinear(W_int8, s[C], 0[C], axis)</c> with W_int8 computed here.
/// Activation x: <c>DequantizeLinear(QuantizeLinear(x, s, z), s, z)</c>, uint8; below 8 bits a
/// <c>Clip(q, qmin, qmax)</c> on the integer codes keeps the range of the bit width.
/// Only the planned uses are rewired; other consumers keep reading the float value.
/// </summary>
public sealed class InsertQdqNodes : IPass
{
    public string Name => "insert-qdq-nodes";

    public PassResult Run(Model model, PassContext context)
    {
        var plan = context.Get<QuantizationPlan>();
        var graph = model.Graph;
        if (plan.Entries.Count > 0 && model.DefaultOpset < 13)
            throw new OnnxViTQException($"the model imports ONNX opset {model.DefaultOpset}; per-channel QuantizeLinear/DequantizeLinear need opset 13 or later (re-export with opset_version=13 or newer)");
        var order = graph.Nodes.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i);
        foreach (var entry in plan.Entries)
        {
            if (entry.Quantizer is not UniformQuantizer uq)
                throw new NotSupportedException($"quantizer '{entry.Quantizer.Kind}' of '{entry.Value.Name}' has no portable form");
            var firstUse = entry.Uses.Select(u => u.Node).MinBy(n => order[n])!;
            var dequantized = entry.Role == TensorRole.Weight
                ? EmitWeight(graph, entry.Value, uq, firstUse)
                : EmitActivation(graph, entry.Value, uq, firstUse);
            dequantized.Type = entry.Value.Type;
            var uses = entry.Uses.ToHashSet();
            entry.Value.ReplaceUsesWith(dequantized, uses.Contains);
        }
        return new PassResult(plan.Entries.Count > 0);
    }

    private static Value EmitWeight(Graph g, Value weight, UniformQuantizer q, Node before)
    {
        if (!Constants.TryGetTensor(weight, out var w)) throw new InvalidOperationException($"weight '{weight.Name}' is not constant");
        if (!q.Symmetric) throw new NotSupportedException("weights are emitted as symmetric int8");
        var codes = q.QuantizeAll(w.ToFloats(), w.Dims.ToArray()).Select(c => (sbyte)c).ToArray();
        var qw = g.AddInitializer(g.UniqueName(weight.Name + "_quantized"), Tensor.From<sbyte>(DataType.Int8, w.Dims, codes));
        var (scale, zero) = Parameters(g, weight.Name, q, DataType.Int8);
        var attrs = q.Axis is { } axis ? new[] { AttributeValue.Int("axis", axis) } : [];
        var dq = g.AddNode("DequantizeLinear", [qw, scale, zero], [weight.Name + "_dequantized"], attrs, name: g.UniqueName(weight.Name + "_DequantizeLinear"), before: before);
        return dq.Output();
    }

    private static Value EmitActivation(Graph g, Value x, UniformQuantizer q, Node before)
    {
        if (q.Symmetric || q.Axis is not null) throw new NotSupportedException("activations are emitted per tensor as asymmetric uint8");
        var (scale, zero) = Parameters(g, x.Name, q, DataType.UInt8);
        var quantize = g.AddNode("QuantizeLinear", [x, scale, zero], [x.Name + "_quantized"], name: g.UniqueName(x.Name + "_QuantizeLinear"), before: before);
        var codes = quantize.Output();
        var shape = x.Type?.Shape;
        codes.Type = new TensorTypeInfo(DataType.UInt8, shape);
        if (q.Bits < 8)
        {
            var lo = g.AddInitializer(g.UniqueName($"{x.Name}_qmin"), Tensor.From<byte>(DataType.UInt8, [], [(byte)q.QMin]));
            var hi = g.AddInitializer(g.UniqueName($"{x.Name}_qmax"), Tensor.From<byte>(DataType.UInt8, [], [(byte)q.QMax]));
            var clip = g.AddNode("Clip", [codes, lo, hi], [x.Name + $"_quantized_{q.Bits}bit"], name: g.UniqueName(x.Name + "_Clip"), before: before);
            codes = clip.Output();
            codes.Type = new TensorTypeInfo(DataType.UInt8, shape);
        }
        var dq = g.AddNode("DequantizeLinear", [codes, scale, zero], [x.Name + "_dequantized"], name: g.UniqueName(x.Name + "_DequantizeLinear"), before: before);
        return dq.Output();
    }

    private static (Value Scale, Value Zero) Parameters(Graph g, string baseName, UniformQuantizer q, DataType zeroType)
    {
        long[] dims = q.Axis is null ? [] : [q.Scales.Count];
        var scale = g.AddInitializer(g.UniqueName(baseName + "_scale"), Tensor.FromFloats(dims, q.Scales.ToArray()));
        Tensor zero = zeroType == DataType.Int8
            ? Tensor.From<sbyte>(DataType.Int8, dims, q.ZeroPoints.Select(z => (sbyte)z).ToArray())
            : Tensor.From<byte>(DataType.UInt8, dims, q.ZeroPoints.Select(z => (byte)z).ToArray());
        return (scale, g.AddInitializer(g.UniqueName(baseName + "_zero_point"), zero));
    }
}
