using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
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
    private static NativeOpSchema Op => NativeOpSchemas.QuantizedLinear;
    public string Name => "native";
    public Stage? Produces => Stages.NativeLinears;

    public IReadOnlyList<OpsetImport> Opsets { get; } = [NativeOpSchema.Opset];

    public string? Declines(LinearLayer layer, Model model) => ActivationAttributes(layer.Activation.Parameters, out string why) is null ? why : null;

    public LoweredLayer Emit(LinearLayer layer, Rewriter r, out string detail)
    {
        var activation = ActivationAttributes(layer.Activation.Parameters, out string activationText)!;
        int weightBits = layer.WeightQuantizer.Bits <= 4 ? 4 : 8;
        var graph = layer.Node.Graph;
        string prefix = layer.Node.Name;
        var packed = r.AddConstant($"{prefix}_packed_weight",
            Tensor.From<byte>(DataType.UInt8, [NativeWeightLayout.Bytes(layer.K, layer.N, weightBits)], NativeWeightLayout.Pack(layer.Code, layer.K, layer.N, weightBits)));
        var scales = layer.WeightScales;
        var scale = r.AddConstant($"{prefix}_weight_scale", Tensor.FromFloats([scales.Length], scales));
        var inputs = new List<Value?> { layer.Input, packed, scale };
        if (layer.Bias is { } bias) inputs.Add(r.AddConstant($"{prefix}_bias", Tensor.FromFloats([bias.Length], bias)));
        List<AttributeValue> attributes = [Op.Int("k", layer.K), Op.Int("n", layer.N), Op.Int("weight_bits", weightBits), .. activation];
        var node = Op.Node(r, inputs, $"{layer.Output.Name}_native", attributes, graph.UniqueName($"{prefix}_native"));
        detail = $"{NativeOps.Domain}.{OpType}: int{weightBits} weights ({layer.WeightQuantizer.Bits}-bit codes), {activationText}";
        return new LoweredLayer(node.Output(), null);
    }

    /// <summary>The op's activation attributes for a fitted quantizer, or null (with the reason).</summary>
    public static List<AttributeValue>? ActivationAttributes(FittedQuantizer? q, out string text)
    {
        if (q is null) { text = "unfitted activation"; return null; }
        if ((q as INativeActivation)?.NativeForm is { } form && ActivationAttributes(form, out string described) is { } attributes)
        {
            text = described;
            return attributes;
        }
        text = $"{q.Kind} activations ({q.Granularity}) have no native kernel";
        return null;
    }

    /// <summary>The op's activation attributes for a native form, or null when QuantizedLinear does not take it.</summary>
    public static List<AttributeValue>? ActivationAttributes(NativeActivationForm form, out string text)
    {
        switch (form)
        {
            case StaticGridForm g:
            {
                // The kernel multiplies u8 codes; a symmetric int8 grid is shifted by +128.
                int offset = g.Symmetric ? 128 : 0;
                text = $"static {(g.Symmetric ? "symmetric" : "asymmetric")} {g.Bits}-bit activations";
                return
                [
                    Op.String("activation", "static"),
                    Op.Float("activation_scale", g.Scale),
                    Op.Int("activation_zero_point", g.ZeroPoint + offset),
                    Op.Int("activation_qmin", g.QMin + offset),
                    Op.Int("activation_qmax", g.QMax + offset),
                ];
            }
            case TokenGridForm { OutlierAlpha: 0 } t:
                text = $"per-token {t.Bits}-bit activations";
                return [Op.String("activation", "token"), Op.Int("activation_bits", t.Bits)];
            case TokenGridForm t:
                text = $"per-token {t.Bits}-bit activations, outliers |x| ≥ {t.OutlierAlpha:g4} in float";
                return [Op.String("activation", "token"), Op.Int("activation_bits", t.Bits), Op.Float("outlier_alpha", t.OutlierAlpha)];
            case ShiftLog2Form l:
                text = $"shift-log2 {l.Bits}-bit activations (powers of two as int16 values)";
                return
                [
                    Op.String("activation", "shift-log2"),
                    Op.Int("activation_bits", l.Bits),
                    Op.Float("activation_scale", l.Scale),
                    Op.Float("activation_shift", l.Shift),
                    Op.Float("activation_epsilon", l.Epsilon),
                ];
            default:
                text = $"{form.GetType().Name} is not a QuantizedLinear input";
                return null;
        }
    }
}
