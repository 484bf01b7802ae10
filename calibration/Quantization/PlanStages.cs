using OnnxViTQ.Observers;
using OnnxViTQ.PassInfra;

namespace OnnxViTQ.Quantization;

/// <summary>Published by quantizer assignment: every site of the plan has a spec.</summary>
internal sealed class QuantizersAssigned;

/// <summary>Published by fitting: every site of the plan has parameters.</summary>
internal sealed class QuantizersFitted;

/// <summary>
/// The stages of a quantization pipeline, declared once: each pass's <see cref="PassContract"/>
/// names the ones it requires, produces and invalidates, and <see cref="PassManager"/> checks a
/// recipe against them before calibration.
/// </summary>
internal static class Stages
{
    public static readonly Stage Canonical = new("canonical", "weights read through Transpose or Identity folded into constants", "canonicalize");
    public static readonly Stage SitesSelected = new("sites-selected", "a plan site per tensor a MatMul, Gemm or Conv reads", "select-sites", typeof(QuantizationPlan));
    public static readonly Stage RolesTagged = new("roles-tagged", "every site's ViT role and module", "tag-roles");
    public static readonly Stage QuantizersAssigned = new("quantizers-assigned", "a quantizer spec per site", "assign-quantizers", typeof(QuantizersAssigned));
    public static readonly Stage Statistics = new("statistics-collected", "calibration statistics per activation site", "collect-statistics", typeof(ActivationStatistics));
    public static readonly Stage WidthsAllocated = new("widths-allocated", "a bit width per attention and MLP module", "mixed-precision");
    public static readonly Stage LayerNormFolded = new("layernorm-folded", "post-LayerNorm scales folded into the LayerNorms and the next linears", "fold-layernorm");
    public static readonly Stage Fitted = new("quantizers-fitted", "every site's quantizer parameters", "fit-quantizers", typeof(QuantizersFitted));
    public static readonly Stage LinearsLowered = new("linears-lowered", "linear layers replaced by a format's integer ops", "lower-native");
    public static readonly Stage NativeLinears = new("native-linears", "linear layers as com.onnxvitq.QuantizedLinear", "lower-native");
    public static readonly Stage PortableEmitted = new("portable-emitted", "the plan's remaining quantizers written as standard ONNX", "emit-portable");
}
