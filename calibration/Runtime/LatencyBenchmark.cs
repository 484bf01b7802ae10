using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.PassInfra;

namespace OnnxViTQ.Runtime;

/// <summary>Latency of one candidate: median and the 10th/90th percentiles of its timed runs (ms).</summary>
internal sealed record Latency(double MedianMs, double P10Ms, double P90Ms);

/// <summary>
/// Times ONNX Runtime sessions on the same input, interleaved round by round (each round runs
/// every candidate once, after <c>warmup</c> untimed rounds): a shared, noisy machine then slows
/// every candidate alike, so their ratios hold even when the absolute figures drift.
/// </summary>
internal static class LatencyBenchmark
{
    public static IReadOnlyList<Latency> Measure(IReadOnlyList<InferenceSession> sessions, string inputName, float[] input, long[] shape,
        int rounds, int warmup = 3, IProgress<ProgressReport>? progress = null, string stage = "timing")
    {
        if (rounds <= 0) throw new OnnxViTQException($"rounds must be positive, got {rounds}");
        if (warmup < 0) throw new OnnxViTQException($"warm-up rounds cannot be negative, got {warmup}");
        using var x = OrtValue.CreateTensorValueFromMemory(input, shape);
        using var run = new RunOptions();
        var outputs = sessions.Select(s => s.OutputNames.ToArray()).ToList();
        var times = sessions.Select(_ => new List<double>(rounds)).ToList();
        for (int r = -warmup; r < rounds; r++)
        {
            for (int i = 0; i < sessions.Count; i++)
            {
                long start = Stopwatch.GetTimestamp();
                using (sessions[i].Run(run, [inputName], [x], outputs[i])) { }
                if (r >= 0) times[i].Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            }
            progress?.Report(new ProgressReport(stage, r + warmup + 1, rounds + warmup, "rounds"));
        }
        return times.Select(t => new Latency(Quantile(t, 0.5), Quantile(t, 0.1), Quantile(t, 0.9))).ToList();
    }

    /// <summary>The <paramref name="q"/>-quantile, interpolated between order statistics (q = 0.5:
    /// the median, the mean of the middle two for an even count).</summary>
    public static double Quantile(IEnumerable<double> values, double q)
    {
        var s = values.Order().ToArray();
        if (s.Length == 0) throw new ArgumentException("no values", nameof(values));
        double position = q * (s.Length - 1);
        int low = (int)Math.Floor(position), high = (int)Math.Ceiling(position);
        return s[low] + (s[high] - s[low]) * (position - low);
    }
}
