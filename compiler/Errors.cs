namespace OnnxViTQ;

/// <summary>A problem with the user's input (file, model, data, options). Its message is one
/// line meant for the user and names the file, node or tensor concerned; the CLI prints it
/// without a stack trace.</summary>
public class OnnxViTQException : Exception
{
    public OnnxViTQException(string message) : base(message) { }
    public OnnxViTQException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>The file is missing, truncated, or not an ONNX model.</summary>
public sealed class OnnxFormatException(string message, Exception? inner = null)
    : OnnxViTQException(message, inner ?? new Exception(message));

/// <summary>A graph invariant does not hold (dangling input, cycle, duplicate name...).</summary>
public sealed class GraphValidationException(string message) : OnnxViTQException(message);
