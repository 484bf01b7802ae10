using OnnxViTQ.Ir;

namespace OnnxViTQ.Quantization;

/// <summary>
/// Writes one site's quantizer as standard ONNX nodes placed just before the site's first use.
/// Node and value names derive from the site's tensor name, so an emitted graph reads as
/// "x_quantized", "x_scale"... Hides the opset differences of the ops quantizers use
/// (reduction axes became an input in opset 18).
/// </summary>
internal sealed class PortableBuilder(Model model, Node before, string prefix)
{
    private readonly Graph _graph = before.Graph;

    public long Opset { get; } = model.DefaultOpset;
    public string Prefix => prefix;

    public Value Constant(string suffix, Tensor tensor) => _graph.AddInitializer(_graph.UniqueName($"{prefix}_{suffix}"), tensor);

    public Value Scalar(string suffix, float value) => Constant(suffix, Tensor.Scalar(value));

    public Value Node(string opType, string suffix, IEnumerable<Value?> inputs, params AttributeValue[] attributes) =>
        _graph.AddNode(opType, inputs, [$"{prefix}_{suffix}"], attributes, name: _graph.UniqueName($"{prefix}_{opType}_{suffix}"), before: before).Output();

    public Value Op(string opType, string suffix, params Value[] inputs) => Node(opType, suffix, inputs);

    /// <summary>ReduceMin/ReduceMax over the last axis, keeping it (size 1).</summary>
    public Value ReduceLast(string opType, string suffix, Value x)
    {
        if (Opset >= 18)
            return Node(opType, suffix, [x, Constant(suffix + "_axes", Tensor.FromInt64s([1], [-1]))], AttributeValue.Int("keepdims", 1));
        return Node(opType, suffix, [x], AttributeValue.Ints("axes", [-1]), AttributeValue.Int("keepdims", 1));
    }
}
