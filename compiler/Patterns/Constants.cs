using OnnxViTQ.Ir;

namespace OnnxViTQ.Patterns;

internal static class Constants
{
    /// <summary>The constant behind a value: an initializer (that is not an overridable graph
    /// input) or the <c>value</c> of a Constant node.</summary>
    public static bool TryGetTensor(Value value, out Tensor tensor)
    {
        if (value.Initializer is { } t && !value.IsGraphInput)
        {
            tensor = t;
            return true;
        }
        if (value.Producer is { OpType: "Constant", Domain: "" or "ai.onnx" } c && c.Attribute("value") is { Kind: AttributeKind.Tensor } a)
        {
            tensor = a.AsTensor();
            return true;
        }
        tensor = null!;
        return false;
    }
}
