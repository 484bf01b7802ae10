namespace OnnxViTQ;

/// <summary>Where an added pass goes in a recipe: right before, or right after, the pass named
/// <see cref="Anchor"/> (after the passes already added there, so several keep their order).</summary>
internal sealed record ExtensionPoint(string Anchor, bool After)
{
    public override string ToString() => $"{(After ? "after" : "before")} {Anchor}";
}

/// <summary>A pass that an output format, an option or another pass (its companion) adds to a
/// recipe at a declared point; <see cref="Purpose"/> says who asked, for messages.</summary>
internal sealed record PassExtension(PassStep Step, ExtensionPoint At, string Purpose);

/// <summary>
/// The extension points of the standard pipeline, and how a recipe's pass list is completed from
/// them. A recipe's own passes win: an extension is not added when the recipe already names a
/// pass of the same family (<see cref="PassFactory.Family"/>: a recipe that names lower-ort keeps
/// it under --format native), and a recipe's <see cref="Recipe.Removed"/> takes any pass out,
/// companions included. The order the result must respect is then checked by
/// <see cref="PassInfra.PassManager.CheckOrder"/> from the passes' contracts.
/// </summary>
internal static class PassExtensions
{
    /// <summary>Format lowerings: just before the emitter, which writes QDQ only for what they leave.</summary>
    public static readonly ExtensionPoint Lowering = new("emit-portable", After: false);

    /// <summary>Rewrites of the emitted graph (fusions into native ops, unsigned weight storage).</summary>
    public static readonly ExtensionPoint AfterEmission = new("emit-portable", After: true);

    /// <summary>Decisions that need statistics and must precede folds and fitting (mixed precision).</summary>
    public static readonly ExtensionPoint AfterStatistics = new("collect-statistics", After: true);

    public static ExtensionPoint After(string pass) => new(pass, After: true);

    /// <summary>The passes the options add: the format's lowering, mixed precision's allocation.</summary>
    public static IEnumerable<PassExtension> Of(QuantizationOptions options)
    {
        if (options.Format.LoweringPass() is { } lowering)
            yield return new PassExtension(new PassStep(lowering), Lowering, $"--format {options.Format.Name()}");
        if (options.MixedPrecision is { } mixed)
            yield return new PassExtension(new PassStep("mixed-precision", new Dictionary<string, string>
            {
                ["min"] = mixed.MinBits.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["max"] = mixed.MaxBits.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["avg"] = mixed.AverageBits.ToString(System.Globalization.CultureInfo.InvariantCulture),
            }), AfterStatistics, "mixed precision");
    }

    /// <summary>
    /// <paramref name="passes"/> with the extensions added (then every companion of a pass in the
    /// list, until none is missing) and <paramref name="removed"/> taken out.
    /// </summary>
    public static IReadOnlyList<PassStep> Complete(string recipe, IReadOnlyList<PassStep> passes, IEnumerable<PassExtension> extensions, IReadOnlyList<string> removed)
    {
        foreach (var name in removed)
            PassRegistry.Get(name); // an unknown name is an error, with the list of passes
        var list = passes.ToList();
        var withheld = new HashSet<string>();  // extensions not added because the recipe removes them
        // Where the last extension at each point went: the next one at the same point follows it.
        var placed = new Dictionary<ExtensionPoint, PassStep>();
        bool Add(PassExtension e)
        {
            string family = PassRegistry.Get(e.Step.Name).Family;
            if (list.Any(p => PassRegistry.Get(p.Name).Family == family)) return false;
            if (removed.Contains(e.Step.Name)) return withheld.Add(e.Step.Name) && false;
            int anchor = list.FindIndex(p => p.Name == e.At.Anchor);
            if (anchor < 0)
                throw new OnnxViTQException($"recipe '{recipe}' has no {e.At.Anchor} pass, so {e.Purpose} has nowhere to put '{e.Step.Name}' ({e.At})");
            int at = e.At.After ? anchor + 1 : anchor;
            if (e.At.After && placed.TryGetValue(e.At, out var previous) && list.FindIndex(s => ReferenceEquals(s, previous)) is >= 0 and var p) at = p + 1;
            list.Insert(at, e.Step);
            placed[e.At] = e.Step;
            return true;
        }
        foreach (var e in extensions) Add(e);
        for (bool grew = true; grew;)
        {
            grew = false;
            foreach (var step in list.ToList())
                foreach (var companion in PassRegistry.Get(step.Name).Companions)
                    grew |= Add(companion with { Purpose = $"'{step.Name}'" });
        }
        foreach (var name in removed)
            if (list.RemoveAll(p => p.Name == name) == 0 && !withheld.Contains(name))
                throw new OnnxViTQException($"recipe '{recipe}' removes '{name}', which its pass list does not have");
        return list;
    }
}
