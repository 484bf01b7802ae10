namespace OnnxViTQ.Build;

/// <summary>The codes of the errors and warnings the OnnxQuantize build step reports (documented in the README).</summary>
public static class ErrorCodes
{
    /// <summary>The model file is missing.</summary>
    public const string ModelNotFound = "OVQ0001";
    /// <summary>Calibration is not given or the data is missing.</summary>
    public const string CalibrationNotFound = "OVQ0002";
    /// <summary>Item metadata is invalid (an option the tool refuses, an output that would overwrite the model).</summary>
    public const string InvalidOptions = "OVQ0003";
    /// <summary>The tool rejected the model or data (malformed ONNX, data that does not fit the model...).</summary>
    public const string QuantizationFailed = "OVQ0004";
    /// <summary>The tool failed unexpectedly (a bug: its message asks for ONNXVITQ_DEBUG=1).</summary>
    public const string ToolCrashed = "OVQ0005";
    /// <summary>The bundled tool or the dotnet host could not be started.</summary>
    public const string ToolNotFound = "OVQ0006";
    /// <summary>A warning the tool printed.</summary>
    public const string ToolWarning = "OVQ1001";
}
