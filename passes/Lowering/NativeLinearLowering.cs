using OnnxViTQ.Ir;
using OnnxViTQ.Quantization;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>
/// <c>--format native</c>: linear layers become <c>com.onnxvitq.QuantizedLinear</c> (runtime-ops)
/// with weights packed for the VNNI kernel (int4 when the weight quantizer has ≤ 4 bits, int8
/// otherwise). Activation quantizers with a native form: uniform per tensor (static scale),
/// per-token (dynamic, per row), outlier-split (per-token plus the float outlier residual) and
/// shift-log2 (ADFQ-ViT's post-GELU levels, multiplied as int16 powers of two); other kinds keep
/// their portable form.
/// </summary>
internal sealed class NativeLinearLowering : ILinearLowering
{
    public const string OpType = "QuantizedLinear";
    public string Name => "native";

    public LoweredLayer? Emit(LinearLayer layer, Model model, out string detail)
    {
        var activation = ActivationAttributes(layer.Activation.Parameters, out string activationText);
        if (activation is null) { detail = activationText; return null; }
        int weightBits = layer.WeightQuantizer.Bits <= 4 ? 4 : 8;
        var graph = layer.Node.Graph;
        string prefix = layer.Node.Name;
        var packed = graph.AddInitializer(graph.UniqueName($"{prefix}_packed_weight"),
            Tensor.From<byte>(DataType.UInt8, [NativeWeightLayout.Bytes(layer.K, layer.N, weightBits)], NativeWeightLayout.Pack(layer.Code, layer.K, layer.N, weightBits)));
        var scales = layer.WeightScales;
        var scale = graph.AddInitializer(graph.UniqueName($"{prefix}_weight_scale"), Tensor.FromFloats([scales.Length], scales));
        var inputs = new List<Value?> { layer.Input, packed, scale };
        if (layer.Bias is { } bias) inputs.Add(graph.AddInitializer(graph.UniqueName($"{prefix}_bias"), Tensor.FromFloats([bias.Length], bias)));
        var attributes = new List<AttributeValue>
        {
            AttributeValue.Int("k", layer.K),
            AttributeValue.Int("n", layer.N),
            AttributeValue.Int("weight_bits", weightBits),
        };
        attributes.AddRange(activation);
        var node = graph.AddNode(OpType, inputs, [$"{layer.Output.Name}_native"], attributes, NativeOps.Domain,
            graph.UniqueName($"{prefix}_native"), before: layer.Node);
        OpsetImports.Ensure(model, NativeOps.Domain, 1);
        detail = $"{NativeOps.Domain}.{OpType}: int{weightBits} weights ({layer.WeightQuantizer.Bits}-bit codes), {activationText}";
        return new LoweredLayer(node.Output(), null);
    }

    /// <summary>The op's activation attributes for a fitted quantizer, or null (with the reason).</summary>
    public static List<AttributeValue>? ActivationAttributes(FittedQuantizer? q, out string text)
    {
        switch (q)
        {
            case UniformQuantizer { Axis: null } u:
            {
                // The kernel multiplies u8 codes; a symmetric int8 quantizer is shifted by +128.
                int offset = u.Symmetric ? 128 : 0;
                text = $"static {(u.Symmetric ? "symmetric" : "asymmetric")} {u.Bits}-bit activations";
                return
                [
                    AttributeValue.String("activation", "static"),
                    AttributeValue.Float("activation_scale", u.Scales[0]),
                    AttributeValue.Int("activation_zero_point", u.ZeroPoints[0] + offset),
                    AttributeValue.Int("activation_qmin", u.QMin + offset),
                    AttributeValue.Int("activation_qmax", u.QMax + offset),
                ];
            }
            case PerTokenQuantizer p:
                text = $"per-token {p.Bits}-bit activations";
                return [AttributeValue.String("activation", "token"), AttributeValue.Int("activation_bits", p.Bits)];
            case OutlierSplitQuantizer o:
                text = $"per-token {o.Bits}-bit activations, outliers |x| ≥ {o.Alpha:g4} in float";
                return [AttributeValue.String("activation", "token"), AttributeValue.Int("activation_bits", o.Bits), AttributeValue.Float("outlier_alpha", o.Alpha)];
            case ShiftLog2Quantizer l:
                text = $"shift-log2 {l.Bits}-bit activations (powers of two as int16 values)";
                return
                [
                    AttributeValue.String("activation", "shift-log2"),
                    AttributeValue.Int("activation_bits", l.Bits),
                    AttributeValue.Float("activation_scale", l.Scale),
                    AttributeValue.Float("activation_shift", l.Shift - l.Epsilon),
                    AttributeValue.Float("activation_epsilon", l.Epsilon),
                ];
            default:
                text = q is null ? "unfitted activation" : $"{q.Kind} activations ({q.Granularity}) have no native kernel";
                return null;
        }
    }
}
