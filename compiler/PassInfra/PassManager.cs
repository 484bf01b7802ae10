using System.Diagnostics;
using OnnxViTQ.Ir;

namespace OnnxViTQ.PassInfra;

internal sealed record PassTiming(string Pass, TimeSpan Elapsed, bool Modified);

/// <summary>A pass threw an unexpected error or left an invalid graph; names the pass and the
/// passes that ran before it.</summary>
internal sealed class PassFailedException(string pass, IReadOnlyList<string> before, string message, Exception inner)
    : OnnxViTQException($"pass '{pass}' failed{(before.Count > 0 ? $" (after {string.Join(", ", before)})" : "")}: {message}", inner)
{
    public string Pass { get; } = pass;
    public IReadOnlyList<string> PassesBefore { get; } = before;
}

/// <summary>Runs passes in order, times each, and validates the graph after every pass that
/// reports a change, so a broken rewrite is caught where it happens.</summary>
internal sealed class PassManager(IEnumerable<IPass> passes)
{
    private readonly IReadOnlyList<IPass> _passes = passes.ToList();

    /// <summary>On by default: validation is linear in graph size, cheap next to calibration.</summary>
    public bool ValidateAfterEachPass { get; init; } = true;

    public IReadOnlyList<IPass> Passes => _passes;

    /// <summary>Stages the whole pass list must establish (a recipe's output must be emitted).</summary>
    public IReadOnlyList<Stage> Goals { get; init; } = [];

    /// <summary>
    /// Checks the order before any pass runs (so a wrong recipe fails before minutes of
    /// calibration, not in the middle): every pass's requirements are produced by an earlier pass
    /// or already hold in <paramref name="context"/>; no pass runs after a pass that produced a
    /// stage it invalidates; the goals are reached. Messages name both passes.
    /// </summary>
    public void CheckOrder(PassContext context)
    {
        var producedBy = new Dictionary<string, string>();
        foreach (var pass in _passes)
        {
            var contract = pass.Contract;
            foreach (var need in contract.Requires)
                if (!producedBy.ContainsKey(need.Name) && !context.Holds(need))
                    throw new OnnxViTQException($"pass '{pass.Name}' requires {need.Name} ({need.Description}), which no earlier pass produces: " +
                                                $"run '{need.ProducedBy}' before '{pass.Name}'");
            foreach (var stage in contract.Invalidates)
                if (producedBy.TryGetValue(stage.Name, out var producer))
                    throw new OnnxViTQException($"pass '{pass.Name}' invalidates {stage.Name} ({stage.Description}), which '{producer}' produced before it: " +
                                                $"run '{pass.Name}' before '{producer}'");
            foreach (var stage in contract.Produces) producedBy[stage.Name] = pass.Name;
        }
        foreach (var goal in Goals)
            if (!producedBy.ContainsKey(goal.Name) && !context.Holds(goal))
                throw new OnnxViTQException($"no pass produces {goal.Name} ({goal.Description}): add '{goal.ProducedBy}'");
    }

    public IReadOnlyList<PassTiming> Run(Model model, PassContext context)
    {
        CheckOrder(context);
        if (ValidateAfterEachPass)
        {
            // What the passes start from must be well formed, or the first pass that changes
            // something would be blamed for the file's cycle or dangling input.
            try { GraphValidator.Validate(model); }
            catch (GraphValidationException e) { throw new OnnxViTQException($"the model is not a valid graph: {e.Message}"); }
        }
        var timings = new List<PassTiming>();
        var ran = new List<string>();
        foreach (var pass in _passes)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            context.CurrentPass = pass.Name;
            var sw = Stopwatch.StartNew();
            PassResult result;
            try
            {
                result = pass.Run(model, context);
            }
            catch (OnnxViTQException e) when (e is not GraphValidationException and not PassFailedException)
            {
                throw; // a problem with the user's input: its message already says what is wrong
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new PassFailedException(pass.Name, ran.ToList(), e.Message, e);
            }
            sw.Stop();
            if (ValidateAfterEachPass && result.Modified)
            {
                try
                {
                    GraphValidator.Validate(model);
                }
                catch (GraphValidationException e)
                {
                    throw new PassFailedException(pass.Name, ran.ToList(), $"left an invalid graph: {e.Message}", e);
                }
            }
            foreach (var stage in pass.Contract.Produces) context.Establish(stage);
            timings.Add(new PassTiming(pass.Name, sw.Elapsed, result.Modified));
            ran.Add(pass.Name);
        }
        context.CurrentPass = "";
        return timings;
    }
}
