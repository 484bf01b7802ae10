using OnnxViTQ.PassInfra;
using Spectre.Console;

namespace OnnxViTQ.Cli;

/// <summary>Shows <see cref="ProgressReport"/>s: live bars on a terminal, otherwise a line per
/// stage at start and at every quarter, so logs stay short.</summary>
internal static class ConsoleProgress
{
    public static T Run<T>(CliIO io, Func<IProgress<ProgressReport>, T> work)
    {
        if (!io.Interactive)
            return work(new LineProgress(io.Out));
        return io.Console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var tasks = new Dictionary<string, ProgressTask>();
                return work(new Callback(r =>
                {
                    if (!tasks.TryGetValue(r.Stage, out var task))
                        tasks[r.Stage] = task = ctx.AddTask(r.Stage, maxValue: Math.Max(1, r.Total));
                    task.Value = r.Done;
                    task.Description = $"{r.Stage} ({r.Done}/{r.Total} {r.Unit})";
                }));
            });
    }

    /// <summary>Synchronous <see cref="IProgress{T}"/> (the BCL's Progress posts asynchronously).</summary>
    private sealed class Callback(Action<ProgressReport> report) : IProgress<ProgressReport>
    {
        public void Report(ProgressReport value) => report(value);
    }

    private sealed class LineProgress(TextWriter output) : IProgress<ProgressReport>
    {
        private readonly Dictionary<string, int> _lastQuarter = [];

        public void Report(ProgressReport r)
        {
            int quarter = r.Total <= 0 ? 4 : (int)(4 * r.Done / r.Total);
            if (_lastQuarter.TryGetValue(r.Stage, out int last) && last == quarter) return;
            _lastQuarter[r.Stage] = quarter;
            output.WriteLine($"  {r.Stage}: {r.Done}/{r.Total} {r.Unit}");
        }
    }
}
