using System.Text;
using OnnxViTQ.Fuzz;
using OnnxViTQ.Serialization;

/// <summary>
/// "Hostile model files" (marked, refreshed alone, not part of a full run: it takes hours):
/// <see cref="ModelMutator"/> mutants of every committed model and of a native-format model, run
/// through the command line by <see cref="FuzzRun"/>; the table says how each ended and lists every
/// failure with the seed that reproduces it.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only fuzz [--mutants 10000] [--seed 1]</c>.
/// </summary>
internal static class FuzzSection
{
    public static void Write(Bench b)
    {
        int mutants = int.Parse(b.Arg("--mutants", "10000"), System.Globalization.CultureInfo.InvariantCulture);
        int seed = int.Parse(b.Arg("--seed", "1"), System.Globalization.CultureInfo.InvariantCulture);
        string work = Path.Combine(Path.GetTempPath(), $"onnxvitq-fuzz-{Environment.ProcessId}");
        var origins = FuzzOrigins.Create(b.Models, work);
        var run = new FuzzRun(work, b.CommittedEval, b.CommittedEval, Path.Combine(b.Models, "data", "eval_2000_labels.npy"));
        var result = run.Run(origins, mutants, seed, (done, r) =>
        {
            if (done % 100 == 0) Console.WriteLine($"fuzz: {done}/{mutants} mutants, {r.Failures.Count} failures, {r.Quantized} quantized, {r.Evaluated} evaluated");
        });
        var r = b.Report;
        r.AppendLine("## Hostile model files");
        r.AppendLine();
        r.AppendLine($"Regenerate: `dotnet run --project tools/bench -c Release -- --only fuzz --mutants {mutants} --seed {seed}` ({DateTime.UtcNow:yyyy-MM-dd}, {b.Runtime}). " +
                     $"Mutants (tools/bench/Fuzz/ModelMutator.cs) of the {origins.Count - 1} committed models and of a `--format native` model of vit.opset17.onnx, round robin, seeds {seed}–{seed + mutants - 1}: " +
                     "byte edits of the file's structure (flips, truncation, hostile varints, cut and repeated ranges) and edits of the parsed model (hostile dims, element types, " +
                     "attributes, input shapes, opsets and IR versions, dangling, duplicate and cyclic names, removed nodes and initializers, external-data entries, metadata, and the " +
                     "attributes and weight shapes of `com.onnxvitq` nodes). Each goes through `onnxvitq inspect`; one it accepts is quantized (8 samples, the recipe and format " +
                     "rotating with the seed) or, if native, evaluated on 8 images with the custom-op library loaded. A test runs the first 60 of these seeds in CI " +
                     "(`FuzzTests`). A failure is exit 70, an exception leaving the command, a command running past 120 s, or a crash of the process.");
        r.AppendLine();
        r.AppendLine("| mutants | accepted by inspect | quantized | evaluated (native) | refused with a message (exit 1/2) | internal errors (exit 70) | exceptions | hangs | crashes | time |");
        r.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        int internalErrors = result.Failures.Count(f => f.What.StartsWith("exit", StringComparison.Ordinal));
        int exceptions = result.Failures.Count(f => f.What.StartsWith("exception", StringComparison.Ordinal));
        int hangs = result.Failures.Count(f => f.What.StartsWith("hang", StringComparison.Ordinal));
        r.AppendLine($"| {result.Mutants} | {result.Inspected} | {result.Quantized} | {result.Evaluated} | {result.Refused} | {internalErrors} | {exceptions} | {hangs} | 0 | {result.Elapsed.TotalMinutes:0} min |");
        r.AppendLine();
        foreach (var f in result.Failures)
            r.AppendLine($"- {f.Mutant.Origin} seed {f.Mutant.Seed} ({f.Mutant.Description}): `{f.Command}` → {f.What}");
        if (result.Failures.Count > 0) r.AppendLine();
        Directory.Delete(work, recursive: true);
    }
}
