using OnnxViTQ.Cli;

namespace OnnxViTQ.Fuzz;

/// <summary>A mutant the tool did not handle: an internal error (exit 70), an exception that left
/// the command, or a command still running after the time limit.</summary>
internal sealed record FuzzFailure(Mutant Mutant, string Command, string What);

/// <summary>What a fuzz run did: how many mutants, how each command ended, the failures.</summary>
internal sealed class FuzzResult
{
    public int Mutants { get; set; }
    public int Inspected { get; set; }
    public int Quantized { get; set; }
    public int Evaluated { get; set; }
    public int Refused { get; set; }
    public List<FuzzFailure> Failures { get; } = [];
    public bool Hung => Failures.Any(f => f.What.StartsWith("hang", StringComparison.Ordinal));
    public TimeSpan Elapsed { get; set; }
}

/// <summary>
/// Runs mutants through the <c>onnxvitq</c> command line in-process, as a user would: <c>inspect</c>
/// first; a mutant it accepts is quantized (8 calibration samples, the recipe and format rotating
/// with the seed), and a mutant of a native-format model is evaluated on 8 images with the custom-op
/// library loaded, which runs the kernels on whatever the mutant declares. Exit 0, 1 and 2 are
/// handled outcomes; 70, an escaping exception or a command past <see cref="CommandTimeout"/> is a
/// failure. A crash of the process itself ends the run: the mutant it was on is in
/// <c>current-mutant.txt</c> of the work folder.
/// </summary>
internal sealed class FuzzRun(string workFolder, string calibration, string evalImages, string evalLabels)
{
    private static readonly string[] Recipes = ["minmax", "percentile", "ptq4vit", "repq", "dopq", "adfq", "aocq", "liu2021"];
    private static readonly string[] Formats = ["portable", "ort", "native"];

    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>The origin of the mutant with <paramref name="seed"/>: round robin by seed, so a run
    /// that starts at any seed makes the same mutants.</summary>
    public static ModelMutator OriginOf(IReadOnlyList<ModelMutator> origins, int seed) => origins[(int)((uint)seed % (uint)origins.Count)];

    /// <summary>Runs seeds <paramref name="firstSeed"/>… ; <paramref name="record"/> hears each mutant's
    /// outcome (refused, accepted-then-refused, quantized, evaluated, failure) as it ends.</summary>
    public FuzzResult Run(IReadOnlyList<ModelMutator> origins, int mutants, int firstSeed, Action<int, FuzzResult>? progress = null,
        Action<Mutant, string, FuzzFailure?>? record = null)
    {
        Directory.CreateDirectory(workFolder);
        var result = new FuzzResult();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < mutants; i++)
        {
            var mutant = OriginOf(origins, firstSeed + i).Mutate(firstSeed + i);
            int failures = result.Failures.Count;
            File.WriteAllText(Path.Combine(workFolder, "current-mutant.txt"), $"{mutant.Origin} seed {mutant.Seed}: {mutant.Description}\n");
            string model = Path.Combine(workFolder, "mutant.onnx"), output = Path.Combine(workFolder, "mutant.q.onnx");
            File.WriteAllBytes(model, mutant.Bytes);
            result.Mutants++;
            string outcome;
            if (!Command(mutant, result, out int inspected, "inspect", model)) { record?.Invoke(mutant, "failure", result.Failures[^1]); break; }
            if (inspected == ExitCodes.Ok)
            {
                result.Inspected++;
                bool native = System.Text.Encoding.ASCII.GetString(mutant.Bytes).Contains("com.onnxvitq", StringComparison.Ordinal);
                string[] args = native
                    ? ["eval", model, "--data", evalImages, "--labels", evalLabels, "--limit", "8", "--batch-size", "8"]
                    : ["quantize", model, "-o", output, "--calib", calibration, "--samples", "8", "--batch-size", "8",
                       "--recipe", Recipes[(uint)mutant.Seed % Recipes.Length], "--format", Formats[(uint)mutant.Seed / Recipes.Length % Formats.Length]];
                if (!Command(mutant, result, out int code, args)) { record?.Invoke(mutant, "failure", result.Failures[^1]); break; }
                if (code == ExitCodes.Ok) { if (native) result.Evaluated++; else result.Quantized++; }
                else result.Refused++;
                outcome = code == ExitCodes.Ok ? (native ? "evaluated" : "quantized") : "accepted-refused";
            }
            else
            {
                result.Refused++;
                outcome = "refused";
            }
            record?.Invoke(mutant, result.Failures.Count > failures ? "failure" : outcome, result.Failures.Count > failures ? result.Failures[^1] : null);
            foreach (var f in Directory.EnumerateFiles(workFolder, "mutant.q.onnx*")) File.Delete(f); // the output and any data file beside it
            progress?.Invoke(i + 1, result);
        }
        result.Elapsed = clock.Elapsed;
        return result;
    }

    /// <summary>Runs one command; false when it hung (the run stops: its thread still holds the files).</summary>
    private bool Command(Mutant mutant, FuzzResult result, out int code, params string[] args)
    {
        int exit = -1;
        Exception? escaped = null;
        var stderr = new StringWriter();
        var thread = new Thread(() =>
        {
            try { exit = CliApp.Run(args, TextWriter.Null, stderr); }
            catch (Exception e) { escaped = e; }
        }, 64 << 20) { IsBackground = true };
        thread.Start();
        string command = $"onnxvitq {string.Join(" ", args.Select(a => a.Contains(' ') ? $"\"{a}\"" : a))}";
        if (!thread.Join(CommandTimeout))
        {
            result.Failures.Add(new FuzzFailure(mutant, command, $"hang: still running after {CommandTimeout.TotalSeconds:0} s"));
            code = -1;
            return false;
        }
        code = exit;
        if (escaped is not null)
            result.Failures.Add(new FuzzFailure(mutant, command, $"exception left the command: {escaped.GetType().Name}: {escaped.Message}"));
        else if (exit is not (ExitCodes.Ok or ExitCodes.Usage or ExitCodes.BadInput))
            result.Failures.Add(new FuzzFailure(mutant, command, $"exit {exit}: {stderr.ToString().Split('\n')[0].Trim()}"));
        return true;
    }
}
