using OnnxViTQ.Ir;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes.Lowering;

/// <summary>
/// The plan-aware step every lowering and fusion shares: a quantized use that a new op now
/// consumes leaves its site, so the portable emitter writes no quantizer for it.
/// </summary>
internal static class PlanRewrites
{
    public static QuantizationPlan Plan(this Rewriter r) => r.Context.Get<QuantizationPlan>();

    /// <summary>
    /// The use <paramref name="use"/> of <paramref name="value"/>'s site is consumed by a new op:
    /// it leaves the site; <paramref name="reader"/>, when the new op reads the site's portable
    /// quantized output instead of quantizing the float value itself, takes its place. The note
    /// (if any) says which op, for the report.
    /// </summary>
    public static void Consumed(this Rewriter r, Value value, Use use, string? note = null, Use? reader = null)
    {
        var plan = r.Plan();
        var site = plan.For(value);
        site = site with { Uses = site.Uses.Where(u => u != use).Concat(reader is { } x ? [x] : []).ToList() };
        plan.Update(note is null ? site : site.WithNote(note));
    }
}
