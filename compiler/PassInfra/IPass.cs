using OnnxViTQ.Ir;

namespace OnnxViTQ.PassInfra;

/// <summary>What a pass did: <see cref="Modified"/> is true when it changed the model.</summary>
internal readonly record struct PassResult(bool Modified)
{
    public static PassResult Changed => new(true);
    public static PassResult Unchanged => new(false);
}

/// <summary>One rewrite or analysis over a model. Analyses return <see cref="PassResult.Unchanged"/>
/// and publish their results in the <see cref="PassContext"/>. Every pass declares its
/// <see cref="Contract"/>, which <see cref="PassManager"/> checks before anything runs.</summary>
internal interface IPass
{
    string Name { get; }
    PassContract Contract { get; }
    PassResult Run(Model model, PassContext context);
}

/// <summary>
/// A condition of the model and its pass context that passes establish and rely on ("roles
/// tagged", "quantizers fitted", "portable emitted"). <see cref="ProducedBy"/> names the pass that
/// normally establishes it, for messages. <see cref="Evidence"/>, when set, is the context result
/// that shows it holds where no pass of this run produced it (a caller's prepared context).
/// </summary>
internal sealed record Stage(string Name, string Description, string ProducedBy, Type? Evidence = null)
{
    public override string ToString() => Name;
}

/// <summary>
/// The order a pass needs, declared once on the pass: <see cref="Requires"/> — stages an earlier
/// pass must have produced; <see cref="Produces"/> — stages it establishes; <see cref="Invalidates"/>
/// — stages its work would make untrue, so it must run before any pass that produces them (a
/// LayerNorm fold changes weights, so it must precede fitting; a lowering must precede emission).
/// </summary>
internal sealed record PassContract(IReadOnlyList<Stage> Requires, IReadOnlyList<Stage> Produces, IReadOnlyList<Stage> Invalidates)
{
    public PassContract(IReadOnlyList<Stage> requires, IReadOnlyList<Stage> produces) : this(requires, produces, []) { }

    /// <summary>A pass that can run anywhere (cleanups).</summary>
    public static PassContract Anywhere { get; } = new([], [], []);
}
