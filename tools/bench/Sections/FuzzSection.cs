using System.Diagnostics;
using System.Globalization;
using System.Text;
using OnnxViTQ.Fuzz;

/// <summary>
/// "Hostile model files" (marked, refreshed alone, not part of a full run: it takes about half an
/// hour): <see cref="ModelMutator"/> mutants of every committed model and of a native-format model,
/// run through the command line by <see cref="FuzzRun"/> in child processes of this tool, so that a
/// mutant that kills its process is counted as a crash (with its seed) and the run goes on from the
/// next seed. The table says how each mutant ended and lists every failure.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only fuzz [--mutants 10000] [--seed 1]</c>.
/// </summary>
internal static class FuzzSection
{
    public const string ChildFlag = "--fuzz-child";

    public static void Write(Bench b)
    {
        int mutants = int.Parse(b.Arg("--mutants", "10000"), CultureInfo.InvariantCulture);
        int seed = int.Parse(b.Arg("--seed", "1"), CultureInfo.InvariantCulture);
        string work = Path.Combine(Path.GetTempPath(), $"onnxvitq-fuzz-{Environment.ProcessId}");
        Directory.CreateDirectory(work);
        var clock = Stopwatch.StartNew();
        var outcomes = new Dictionary<string, int>();
        var failures = new List<string>();
        int next = seed, end = seed + mutants, crashes = 0;
        while (next < end)
        {
            string log = Path.Combine(work, "outcomes.tsv");
            File.Delete(log);
            var psi = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "onnxvitq-bench.dll"), ChildFlag,
                "--first", next.ToString(CultureInfo.InvariantCulture), "--count", (end - next).ToString(CultureInfo.InvariantCulture), "--work", work, "--log", log])
            { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = b.Root };
            using var child = Process.Start(psi)!;
            child.OutputDataReceived += (_, e) => { if (e.Data?.StartsWith("fuzz:", StringComparison.Ordinal) == true) Console.WriteLine(e.Data); };
            child.ErrorDataReceived += (_, _) => { };
            child.BeginOutputReadLine();
            child.BeginErrorReadLine();
            child.WaitForExit();
            int last = next - 1;
            foreach (var line in File.Exists(log) ? File.ReadAllLines(log) : [])
            {
                var f = line.Split('\t');
                last = int.Parse(f[0], CultureInfo.InvariantCulture);
                outcomes[f[1]] = outcomes.GetValueOrDefault(f[1]) + 1;
                if (f[1] == "failure") failures.Add($"- seed {f[0]} {f[2]}");
            }
            if (child.ExitCode != 0)
            {
                // The process died on the mutant after the last one it logged.
                crashes++;
                string current = File.Exists(Path.Combine(work, "current-mutant.txt")) ? File.ReadAllText(Path.Combine(work, "current-mutant.txt")).Trim() : $"seed {last + 1}";
                failures.Add($"- {current}: the process died (exit {child.ExitCode})");
                Console.WriteLine($"fuzz: crash (exit {child.ExitCode}) on {current}");
                last++;
            }
            next = last + 1;
        }
        int count(string k) => outcomes.GetValueOrDefault(k);
        int total = outcomes.Values.Sum() + crashes;
        int internalErrors = failures.Count(f => f.Contains("→ exit ", StringComparison.Ordinal));
        int exceptions = failures.Count(f => f.Contains("→ exception", StringComparison.Ordinal));
        int hangs = failures.Count(f => f.Contains("→ hang", StringComparison.Ordinal));

        var r = b.Report;
        r.AppendLine("## Hostile model files");
        r.AppendLine();
        r.AppendLine($"Regenerate: `dotnet run --project tools/bench -c Release -- --only fuzz --mutants {mutants} --seed {seed}` ({DateTime.UtcNow:yyyy-MM-dd}, {b.Runtime}). " +
                     $"Mutants (tools/bench/Fuzz/ModelMutator.cs) of the committed models (models/*.onnx and models/exports/*.onnx: other opsets, Constant-node weights, the hybrid) and of a `--format native` model of vit.opset17.onnx, round robin by seed, seeds {seed}–{end - 1}: " +
                     "byte edits of the file's structure (flips, truncation, hostile varints, cut and repeated ranges) and edits of the parsed model (hostile dims, element types, " +
                     "attributes, input shapes, opsets and IR versions, dangling, duplicate and cyclic names, removed nodes and initializers, external-data entries, metadata, and the " +
                     "attributes and weight shapes of `com.onnxvitq` nodes). Each goes through `onnxvitq inspect`; one it accepts is quantized (8 samples, the recipe and format " +
                     "rotating with the seed) or, if native, evaluated on 8 images with the custom-op library loaded, in a child process that the run restarts after a crash. " +
                     "A failure is exit 70, an exception leaving the command, a command running past 120 s, or the process dying. `FuzzTests` runs seeds 1–60 in CI.");
        r.AppendLine();
        r.AppendLine("| mutants | refused by inspect | accepted, then refused with a message | quantized | evaluated (native) | internal errors (exit 70) | exceptions | hangs | crashes | time |");
        r.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        r.AppendLine($"| {total} | {count("refused")} | {count("accepted-refused")} | {count("quantized")} | {count("evaluated")} | {internalErrors} | {exceptions} | {hangs} | {crashes} | {clock.Elapsed.TotalMinutes:0} min |");
        r.AppendLine();
        foreach (var f in failures) r.AppendLine(f);
        if (failures.Count > 0) r.AppendLine();
        Directory.Delete(work, recursive: true);
    }

    /// <summary>The child: runs seeds from --first for --count mutants, one line per mutant in --log
    /// (seed, outcome, and for a failure what happened), flushed as each ends.</summary>
    public static int Child(string[] args)
    {
        string Arg(string name) => args[Array.IndexOf(args, name) + 1];
        int first = int.Parse(Arg("--first"), CultureInfo.InvariantCulture), count = int.Parse(Arg("--count"), CultureInfo.InvariantCulture);
        string work = Arg("--work"), models = Path.Combine(Directory.GetCurrentDirectory(), "models");
        var origins = FuzzOrigins.Create(models, work);
        using var log = new StreamWriter(Arg("--log"), append: true, Encoding.UTF8) { AutoFlush = true };
        var run = new FuzzRun(work, Path.Combine(models, "data", "calib_512.npy"), Path.Combine(models, "data", "eval_2000_images_u8.npy"),
            Path.Combine(models, "data", "eval_2000_labels.npy"));
        run.Run(origins, count, first, (done, r) =>
        {
            if ((first + done - 1) % 100 == 0) Console.WriteLine($"fuzz: seed {first + done - 1}, {r.Failures.Count} failures in this process");
        }, (mutant, outcome, failure) => log.WriteLine(
            $"{mutant.Seed}\t{outcome}\t{(failure is null ? "" : $"{mutant.Origin} ({Clean(mutant.Description)}): `{Clean(failure.Command)}` → {Clean(failure.What)}")}"));
        return 0;
    }

    private static string Clean(string s) => s.Replace('\t', ' ').Replace('\n', ' ').Replace('\r', ' ');
}
