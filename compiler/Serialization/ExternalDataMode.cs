namespace OnnxViTQ;

/// <summary>Where the weights of a written model go.</summary>
public enum ExternalDataMode
{
    /// <summary>Inline, unless the model would pass protobuf's 2 GiB limit.</summary>
    Auto,
    /// <summary>Always inline (fails past 2 GiB).</summary>
    Never,
    /// <summary>Always in <c>&lt;model&gt;.data</c> beside the model.</summary>
    Always,
}
