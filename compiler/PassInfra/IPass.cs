using OnnxViTQ.Ir;

namespace OnnxViTQ.PassInfra;

/// <summary>What a pass did: <see cref="Modified"/> is true when it changed the model.</summary>
internal readonly record struct PassResult(bool Modified)
{
    public static PassResult Changed => new(true);
    public static PassResult Unchanged => new(false);
}

/// <summary>One rewrite or analysis over a model. Analyses return <see cref="PassResult.Unchanged"/>
/// and publish their results in the <see cref="PassContext"/>.</summary>
internal interface IPass
{
    string Name { get; }
    PassResult Run(Model model, PassContext context);
}

/// <summary>Optionally implemented by a pass: the <see cref="PassContext"/> results it needs and
/// those it publishes, so <see cref="PassManager"/> can reject a recipe with passes in the wrong
/// order before minutes of calibration, not in the middle.</summary>
internal interface IPassContract
{
    IReadOnlyList<Type> Requires { get; }
    IReadOnlyList<Type> Produces { get; }
}
