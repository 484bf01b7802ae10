using ScottPlot;

namespace OnnxViTQ.Cli.Report;

/// <summary>The report's figures, drawn with ScottPlot and returned as SVG markup to inline
/// (the XML declaration stripped: the report must open offline, with nothing external).</summary>
internal static class ReportPlots
{
    private const int Width = 720, Height = 300;

    /// <summary>Value histogram of a tensor's calibration sample (log counts) with the quantizer's
    /// clipping range marked; no marks for ranges that vary per token.</summary>
    public static string Histogram(string title, ReadOnlySpan<float> values, (double Lo, double Hi)? range)
    {
        double min = double.PositiveInfinity, max = double.NegativeInfinity;
        foreach (var v in values) { min = Math.Min(min, v); max = Math.Max(max, v); }
        if (range is { } r) { min = Math.Min(min, r.Lo); max = Math.Max(max, r.Hi); }
        if (!(max > min)) max = min + 1;
        const int bins = 120;
        double width = (max - min) / bins;
        var counts = new double[bins];
        foreach (var v in values) counts[Math.Clamp((int)((v - min) / width), 0, bins - 1)]++;
        var positions = Enumerable.Range(0, bins).Select(i => min + (i + 0.5) * width).ToArray();

        var plot = NewPlot(title, "value", "log10(count + 1)");
        var bars = plot.Add.Bars(positions, counts.Select(c => Math.Log10(c + 1)).ToArray());
        foreach (var bar in bars.Bars)
        {
            bar.Size = width;
            bar.LineWidth = 0;
            bar.FillColor = Colors.SteelBlue;
        }
        if (range is { } q)
        {
            foreach (var (x, label) in new[] { (q.Lo, "range min"), (q.Hi, "range max") })
            {
                var line = plot.Add.VerticalLine(x, 2, Colors.Crimson, LinePattern.Dashed);
                line.LegendText = label;
            }
            plot.ShowLegend(Alignment.UpperRight);
        }
        return Svg(plot);
    }

    /// <summary>Per-channel min and max of a tensor over calibration: outlier channels show as spikes.</summary>
    public static string ChannelRanges(string title, IReadOnlyList<float> min, IReadOnlyList<float> max)
    {
        var plot = NewPlot(title, "channel", "value");
        var xs = Enumerable.Range(0, max.Count).Select(i => (double)i).ToArray();
        var hi = plot.Add.Scatter(xs, max.Select(v => (double)v).ToArray(), Colors.Crimson);
        hi.MarkerSize = 0;
        hi.LegendText = "max";
        var lo = plot.Add.Scatter(xs, min.Select(v => (double)v).ToArray(), Colors.SteelBlue);
        lo.MarkerSize = 0;
        lo.LegendText = "min";
        plot.ShowLegend(Alignment.UpperRight);
        return Svg(plot);
    }

    /// <summary>Horizontal bars of pass wall-clock times.</summary>
    public static string PassTimings(IReadOnlyList<(string Pass, double Seconds)> passes)
    {
        var plot = NewPlot("Pass timings", "seconds", "");
        var positions = Enumerable.Range(0, passes.Count).Select(i => (double)(passes.Count - 1 - i)).ToArray();
        var bars = plot.Add.Bars(positions, passes.Select(p => p.Seconds).ToArray());
        bars.Horizontal = true;
        foreach (var bar in bars.Bars) bar.FillColor = Colors.SteelBlue;
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(positions, passes.Select(p => p.Pass).ToArray());
        plot.Axes.Margins(left: 0);
        return Svg(plot, height: Math.Max(160, 26 * passes.Count + 80));
    }

    private static Plot NewPlot(string title, string x, string y)
    {
        var plot = new Plot();
        plot.Font.Set("DejaVu Sans");
        plot.Title(title, size: 14);
        plot.XLabel(x, size: 12);
        if (y.Length > 0) plot.YLabel(y, size: 12);
        return plot;
    }

    private static string Svg(Plot plot, int height = Height)
    {
        string svg = plot.GetSvgXml(Width, height);
        int start = svg.IndexOf("<svg", StringComparison.Ordinal);
        return start > 0 ? svg[start..] : svg;
    }
}
