using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Passes.Canonicalize;

/// <summary>
/// Pass <c>canonicalize</c>: brings the model into the opsets the compiler is written for
/// (<see cref="OpsetConversion.ToCompilerRange"/>: 7–12 up to 13, 18–21 down to 17; a node no
/// adapter converts is refused here, before calibration), then applies the canonical rewrites
/// (<see cref="CanonicalizationRules"/>). It changes constants, so it runs before sites are selected.
/// </summary>
internal sealed class Canonicalize(string modelName) : IPass
{
    private readonly RewriteRulesPass _rules = CanonicalizationRules.Rules();

    public string Name => "canonicalize";

    public PassContract Contract => _rules.Contract;

    public PassResult Run(Model model, PassContext context)
    {
        var conversion = OpsetConversion.ToCompilerRange(model, modelName, values => ProbeShapes(model, values, modelName));
        context.Set(conversion);
        if (conversion.Changed) context.Info($"converted {conversion}");
        var result = _rules.Run(model, context);
        return conversion.Changed ? PassResult.Changed : result;
    }

    /// <summary>Shapes from one ONNX Runtime run of the unconverted model; none when it cannot run
    /// (a dynamic image size not fixed yet): adapters then use forms that need no shape, or refuse.</summary>
    internal static IReadOnlyDictionary<Value, long[]> ProbeShapes(Model model, IReadOnlyList<Value> values, string modelName)
    {
        try
        {
            var shapes = ValueShapes.Probe(model, values, modelName);
            var result = new Dictionary<Value, long[]>();
            foreach (var v in values)
                if (shapes.TryGet(v, out var s)) result[v] = s;
            return result;
        }
        catch (OnnxViTQException)
        {
            return new Dictionary<Value, long[]>();
        }
    }
}
