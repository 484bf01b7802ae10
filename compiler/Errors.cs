namespace OnnxViTQ;

/// <summary>A problem with the user's input (file, model, data, options). Its message is one
/// line meant for the user and names the file, node or tensor concerned; the CLI prints it
/// without a stack trace.</summary>
public class OnnxViTQException : Exception
{
    /// <summary>A problem described by <paramref name="message"/>.</summary>
    public OnnxViTQException(string message) : base(message) { }

    /// <summary>A problem described by <paramref name="message"/>, caused by <paramref name="inner"/>.</summary>
    public OnnxViTQException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>The file is missing, truncated, or not an ONNX model.</summary>
internal sealed class OnnxFormatException(string message, Exception? inner = null)
    : OnnxViTQException(message, inner ?? new Exception(message));

/// <summary>A graph invariant does not hold (dangling input, cycle, duplicate name...).</summary>
internal sealed class GraphValidationException(string message) : OnnxViTQException(message);
