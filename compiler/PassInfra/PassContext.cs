namespace OnnxViTQ.PassInfra;

internal enum DiagnosticLevel { Info, Warning }

internal sealed record Diagnostic(DiagnosticLevel Level, string Pass, string Message)
{
    public override string ToString() => $"{Level.ToString().ToLowerInvariant()}: [{Pass}] {Message}";
}


/// <summary>
/// State shared by the passes of one run: a typed store for results handed from pass to pass
/// (targets, statistics, the quantization plan), diagnostics, progress and cancellation.
/// </summary>
internal sealed class PassContext
{
    private readonly Dictionary<Type, object> _results = [];
    private readonly List<Diagnostic> _diagnostics = [];
    private readonly HashSet<string> _stages = [];

    public IProgress<ProgressReport>? Progress { get; init; }
    public CancellationToken Cancellation { get; init; }

    /// <summary>Name of the pass now running (set by the pass manager; used to tag diagnostics).</summary>
    public string CurrentPass { get; internal set; } = "";

    public IReadOnlyList<Diagnostic> Diagnostics => _diagnostics;

    public void Info(string message) => _diagnostics.Add(new(DiagnosticLevel.Info, CurrentPass, message));
    public void Warn(string message) => _diagnostics.Add(new(DiagnosticLevel.Warning, CurrentPass, message));

    public void Set<T>(T result) where T : class => _results[typeof(T)] = result;

    public bool Has(Type type) => _results.ContainsKey(type);

    /// <summary>Whether <paramref name="stage"/> holds: a pass of this context established it, or
    /// the context already has its evidence (a caller's prepared plan or statistics).</summary>
    public bool Holds(Stage stage) => _stages.Contains(stage.Name) || (stage.Evidence is { } e && Has(e));

    /// <summary>Records that <paramref name="stage"/> holds (the pass manager does, after each pass).</summary>
    public void Establish(Stage stage) => _stages.Add(stage.Name);

    public bool TryGet<T>(out T result) where T : class
    {
        if (_results.TryGetValue(typeof(T), out var r)) { result = (T)r; return true; }
        result = null!;
        return false;
    }

    /// <summary>A result an earlier pass must have produced; the message names the missing piece
    /// so a recipe with passes in the wrong order fails clearly.</summary>
    public T Get<T>() where T : class =>
        TryGet<T>(out var r) ? r : throw new InvalidOperationException(
            $"pass '{CurrentPass}' needs {typeof(T).Name}, which no earlier pass produced (check the recipe's pass order)");
}
