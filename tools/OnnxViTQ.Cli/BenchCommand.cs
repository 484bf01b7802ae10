using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Data;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;
using Spectre.Console;

namespace OnnxViTQ.Cli;

/// <summary>
/// <c>onnxvitq bench</c>: latency of a model (and of a reference, usually its FP32 source) in
/// ONNX Runtime on this machine, as a deployment runs it — QDQ fused into ONNX Runtime's integer
/// kernels, the native ops registered — per batch size, the two timed interleaved.
/// </summary>
internal static class BenchCommand
{
    public static Command Create(CliIO io)
    {
        var model = new Argument<string>("model") { Description = "ONNX model to time (FP32 or quantized, any --format)" };
        var reference = new Option<string?>("--ref") { Description = "Reference model (e.g. the FP32 export) timed alongside: adds the speed-up column" };
        var batches = new Option<string>("--batch-size") { Description = "Batch sizes to time, comma-separated", DefaultValueFactory = _ => "1,8" };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads: one pool shared by the timed models, idle threads spinning as in a deployment (a pool per model would keep the cores busy spinning for the one timed next)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var rounds = new Option<int>("--rounds") { Description = "Timed rounds per batch size (each runs every model once); the figures are medians", DefaultValueFactory = _ => 30 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed rounds before them", DefaultValueFactory = _ => 3 };
        var data = new Option<string?>("--data") { Description = "Images to feed (.npy or folder, preprocessed as for eval; the first batch is reused every round). Default: random values — an outlier-split model's cost depends on real data" };
        var json = new Option<string?>("--json") { Description = "Also write the figures as JSON to this file" };
        var pre = new PreprocessingOptions();
        var device = new DeviceOption();
        var cmd = new Command("bench", "Latency of a model in ONNX Runtime on this machine, per batch size, optionally against a reference model timed in the same rounds")
        {
            model, reference, batches, threads, rounds, warmup, data, json, device.Option,
        };
        pre.AddTo(cmd);
        cmd.SetAction(r => CliApp.Guard(io, () =>
        {
            using var onDevice = ExecutionDevice.Use(device.Read(r));
            Run(io, new BenchSettings(r.GetValue(model)!, r.GetValue(reference), ParseBatches(r.GetValue(batches)!), r.GetValue(threads),
                r.GetValue(rounds), r.GetValue(warmup), r.GetValue(data), r.GetValue(json)), r, pre);
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private sealed record BenchSettings(string Model, string? Reference, int[] Batches, int Threads, int Rounds, int Warmup, string? Data, string? Json);

    private sealed record Row(string Model, int Batch, Latency Latency, double? SpeedUp);

    internal static int[] ParseBatches(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new OnnxViTQException("--batch-size is empty; give sizes such as 1,8");
        return parts.Select(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out int b) && b > 0 ? b
            : throw new OnnxViTQException($"--batch-size '{text}': '{p}' is not a positive integer")).Distinct().ToArray();
    }

    private static void Run(CliIO io, BenchSettings s, ParseResult r, PreprocessingOptions pre)
    {
        if (s.Threads <= 0) throw new OnnxViTQException($"--threads must be positive, got {s.Threads}");
        if (s.Rounds <= 0) throw new OnnxViTQException($"--rounds must be positive, got {s.Rounds}");
        if (s.Warmup < 0) throw new OnnxViTQException($"--warmup cannot be negative, got {s.Warmup}");
        var paths = new List<string> { Paths.ExistingFile(s.Model, "model file") };
        if (s.Reference is not null) paths.Add(Paths.ExistingFile(s.Reference, "reference model"));
        var models = paths.Select(OnnxModelReader.Load).ToList();
        var inputs = models.Select((m, i) => ImageInput.Of(m, paths[i])).ToList();
        if (inputs.Count == 2 && !inputs[0].SampleShape.SequenceEqual(inputs[1].SampleShape))
            throw new OnnxViTQException($"'{paths[0]}' takes images [{string.Join(",", inputs[0].SampleShape)}] but '{paths[1]}' takes [{string.Join(",", inputs[1].SampleShape)}]");
        for (int i = 0; i < paths.Count; i++)
            foreach (int b in s.Batches)
                if (inputs[i].FixedBatch is { } fixedBatch && fixedBatch != b)
                    throw new OnnxViTQException($"'{paths[i]}' input '{inputs[i].Name}' has a fixed batch of {fixedBatch}; it cannot run --batch-size {b} (export with a dynamic batch axis, or time batch {fixedBatch})");
        if (s.Json is not null && Path.GetDirectoryName(Path.GetFullPath(s.Json)) is { } folder && !Directory.Exists(folder))
            throw new OnnxViTQException($"--json: output folder '{folder}' does not exist");
        var images = s.Data is null ? null : CalibrationSources.Open(s.Data, pre.Resolve(r, models[0], inputs[0]));
        var threads = SessionThreads.SharedPool(s.Threads);
        var sessions = new List<InferenceSession>();
        var rows = new List<Row>();
        bool interleaved = paths.Count == 2 && inputs[0].Name == inputs[1].Name;
        try
        {
            for (int i = 0; i < paths.Count; i++) sessions.Add(OrtRuntime.CreateSession(paths[i], QdqExecution.Fused, threads));
            ConsoleProgress.Run(io, progress =>
            {
                foreach (int batch in s.Batches)
                {
                    var x = Input(images, inputs[0], batch);
                    var shape = inputs[0].Shape(batch);
                    // Interleaving needs one input name; exports of one model agree, others are timed in turn.
                    var latencies = interleaved || sessions.Count == 1
                        ? LatencyBenchmark.Measure(sessions, inputs[0].Name, x, shape, s.Rounds, s.Warmup, progress, $"batch {batch}")
                        : sessions.Select((session, i) => LatencyBenchmark.Measure([session], inputs[i].Name, x, shape, s.Rounds, s.Warmup, progress, $"batch {batch}, {Path.GetFileName(paths[i])}")[0]).ToList();
                    for (int i = 0; i < paths.Count; i++)
                        rows.Add(new Row(paths[i], batch, latencies[i], paths.Count == 2 ? latencies[1].MedianMs / latencies[i].MedianMs : null));
                }
                return 0;
            });
        }
        finally
        {
            foreach (var session in sessions) session.Dispose();
        }
        Print(io, s, rows, interleaved, images is null ? "random values (seed 1)" : $"the first images of {s.Data}");
        for (int i = 0; i < paths.Count; i++)
            if (OrtInt8Kernels.FusedExecutionDiffers(models[i]) is { Count: > 0 } reasons)
                io.Out.WriteLine($"note: '{paths[i]}' is timed as ONNX Runtime fuses its QuantizeLinear/DequantizeLinear into integer kernels here, which does not compute " +
                                 $"exactly what the file means: {string.Join("; ", reasons)}. --format ort emits forms ONNX Runtime runs exactly.");
        if (s.Json is not null) WriteJson(s, rows);
    }

    private static float[] Input(ICalibrationSource? images, ImageInput input, int batch)
    {
        long count = input.Shape(batch).Aggregate(1L, (a, d) => a * d);
        if (images is null)
        {
            var random = new Random(1);
            var x = new float[count];
            for (long i = 0; i < count; i++) x[i] = (float)(random.NextDouble() * 4 - 2); // the range of normalised image values
            return x;
        }
        var (first, _) = input.Batches(images, batch, batch).FirstOrDefault();
        if (first is null) throw new OnnxViTQException($"data '{images.Name}' has no samples");
        return first.PadTo(batch).Data;
    }

    private static void Print(CliIO io, BenchSettings s, IReadOnlyList<Row> rows, bool interleaved, string inputText)
    {
        io.Out.WriteLine($"ONNX Runtime {MachineInfo.OrtVersion}, {s.Threads} intra-op thread(s), {MachineInfo.CpuName()} ({Environment.ProcessorCount} cores), " +
                         $"native kernel path {MachineInfo.NativeKernelPath}");
        io.Out.WriteLine($"{s.Rounds} timed rounds after {s.Warmup} warm-up rounds{(interleaved ? ", the two models interleaved" : rows.Any(r => r.SpeedUp is not null) ? ", the two models one after the other (their inputs are named differently)" : "")}; input: {inputText}");
        var table = new Table().Border(TableBorder.Rounded).AddColumn("model").AddColumn(new TableColumn("batch").RightAligned())
            .AddColumn(new TableColumn("median ms").RightAligned()).AddColumn(new TableColumn("p10–p90 ms").RightAligned())
            .AddColumn(new TableColumn("images/s").RightAligned());
        bool speedUp = rows.Any(r => r.SpeedUp is not null);
        if (speedUp) table.AddColumn(new TableColumn("vs ref").RightAligned());
        foreach (var row in rows)
        {
            var cells = new List<string>
            {
                Markup.Escape(row.Model), row.Batch.ToString(CultureInfo.InvariantCulture), $"{row.Latency.MedianMs:0.00}",
                $"{row.Latency.P10Ms:0.00}–{row.Latency.P90Ms:0.00}", $"{1000 * row.Batch / row.Latency.MedianMs:0.0}",
            };
            if (speedUp) cells.Add($"{row.SpeedUp:0.00}×");
            table.AddRow(cells.ToArray());
        }
        io.Console.Write(table);
    }

    private static void WriteJson(BenchSettings s, IReadOnlyList<Row> rows)
    {
        var document = new
        {
            onnxruntime = MachineInfo.OrtVersion,
            cpu = MachineInfo.CpuName(),
            cores = Environment.ProcessorCount,
            native_kernel_path = MachineInfo.NativeKernelPath,
            threads = s.Threads,
            rounds = s.Rounds,
            warmup = s.Warmup,
            input = s.Data ?? "random",
            results = rows.Select(r => new
            {
                model = r.Model,
                batch = r.Batch,
                median_ms = Math.Round(r.Latency.MedianMs, 4),
                p10_ms = Math.Round(r.Latency.P10Ms, 4),
                p90_ms = Math.Round(r.Latency.P90Ms, 4),
                images_per_second = Math.Round(1000 * r.Batch / r.Latency.MedianMs, 2),
                speed_up_vs_ref = r.SpeedUp is { } v ? Math.Round(v, 4) : (double?)null,
            }),
        };
        AtomicFile.WriteAll([(s.Json!, stream => JsonSerializer.Serialize(stream, document, new JsonSerializerOptions { WriteIndented = true }))]);
    }
}
