namespace OnnxViTQ.Quantization;

/// <summary>Published by quantizer assignment: every site of the plan has a spec.</summary>
internal sealed class QuantizersAssigned;

/// <summary>Published by fitting: every site of the plan has parameters.</summary>
internal sealed class QuantizersFitted;
