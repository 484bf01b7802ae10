using System.Diagnostics;
using AngleSharp.Html.Parser;
using OnnxViTQ.Cli;
using OnnxViTQ.Cli.Report;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Cli;

/// <summary><c>quantize --html</c>: one self-contained file with every section and plot.</summary>
[NonParallelizable]
public class HtmlReportTests
{
    private TempDir _dir = null!;
    private string _html = "";
    private string _stdout = "";

    [OneTimeSetUp]
    public void QuantizeWithReports()
    {
        _dir = new TempDir();
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliApp.Run(["quantize", Repo.Model("vit-outliers.opset17.onnx"), "-o", _dir.File("q.onnx"), "--calib", Repo.Calibration, "--samples", "128",
            "--html", _dir.File("report.html"), "--eval-data", Repo.EvalImages, "--eval-labels", Repo.EvalLabels], stdout, stderr);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr.ToString());
        _html = File.ReadAllText(_dir.File("report.html"));
        _stdout = stdout.ToString();
    }

    [OneTimeTearDown]
    public void Cleanup() => _dir.Dispose();

    [Test]
    public void ParsesAsHtmlWithEverySection()
    {
        var parser = new HtmlParser();
        var errors = new List<string>();
        parser.Error += (_, e) =>
        {
            var h = (AngleSharp.Html.Dom.Events.HtmlErrorEvent)e;
            // AngleSharp compares an SVG end tag with its camel-cased element name case-sensitively;
            // HTML5 (§13.2.6.5, "any other end tag" in foreign content) lowercases both, so
            // </clipPath> closing <clipPath> is valid (Chromium agrees: see the test below).
            string at = _html.Substring(Math.Max(0, h.Position.Position - 12), 24);
            if (!at.Contains("</clipPath>", StringComparison.Ordinal)) errors.Add($"{h.Code} at {h.Position}: {h.Message}: ...{at}...");
        };
        var doc = parser.ParseDocument(_html);
        Assert.That(errors, Is.Empty, "HTML5 parse errors");
        Assert.That(doc.Title, Is.EqualTo("OnnxViTQ report: vit-outliers.opset17.onnx"));
        var sections = doc.QuerySelectorAll("section").Select(s => s.Id).ToArray();
        Assert.That(sections, Is.EqualTo(new[] { "model", "recipe", "accuracy", "layers", "tensors", "histograms", "channels", "timings" }));

        // Without --report: the HTML alone still asks for the per-layer output errors.
        Assert.That(doc.QuerySelectorAll("#layers tbody tr"), Has.Length.EqualTo(25), "every linear layer of the 6-block ViT (4 per block + head)");
        Assert.That(doc.QuerySelectorAll("#tensors tbody tr"), Has.Length.EqualTo(26 + 50), "26 weights and 50 activations");
        var accuracy = doc.QuerySelector("#accuracy")!.TextContent;
        Assert.That(accuracy, Does.Contain("2000 samples"));
        Assert.That(_stdout, Does.Contain("top-1 FP32"));
    }

    [Test]
    public void EmbedsEveryPlotInline()
    {
        var doc = new HtmlParser().ParseDocument(_html);
        var histograms = doc.QuerySelectorAll("#histograms figure");
        var channels = doc.QuerySelectorAll("#channels figure");
        Assert.That(histograms, Has.Length.EqualTo(HtmlReport.WorstActivations));
        Assert.That(channels, Has.Length.EqualTo(HtmlReport.ChannelPlots));
        Assert.That(doc.QuerySelectorAll("#timings figure"), Has.Length.EqualTo(1));
        foreach (var figure in doc.QuerySelectorAll("figure"))
        {
            var svg = figure.QuerySelector("svg");
            Assert.That(svg, Is.Not.Null, figure.TextContent);
            Assert.That(svg!.QuerySelectorAll("path, rect, line, polyline, text").Length, Is.GreaterThan(10), "the plot has drawn content");
        }
        // minmax activations are per tensor: every histogram marks its range.
        foreach (var figure in histograms)
        {
            Assert.That(figure.QuerySelector("figcaption")!.TextContent, Does.Contain("Representable range"));
            Assert.That(figure.QuerySelector("svg")!.TextContent, Does.Contain("range max"));
        }
    }

    [Test]
    public void OutlierChannelsStandOut()
    {
        // vit-outliers scales a few post-LayerNorm channels up by construction (models/README.md).
        var doc = new HtmlParser().ParseDocument(_html);
        var caption = doc.QuerySelector("#channels figcaption")!.TextContent;
        var ratio = double.Parse(caption[(caption.LastIndexOf("= ", StringComparison.Ordinal) + 2)..].TrimEnd('.'), System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(ratio, Is.GreaterThan(5), caption);
    }

    [Test]
    public void ReferencesNothingExternal()
    {
        var doc = new HtmlParser().ParseDocument(_html);
        Assert.That(doc.QuerySelectorAll("script, link, iframe, img, object, embed, video, audio, source, use, image"), Is.Empty);
        foreach (var element in doc.All)
            foreach (var attribute in element.Attributes)
            {
                Assert.That(attribute.Name, Is.Not.AnyOf("src", "href", "xlink:href", "srcset", "action", "data"), element.TagName);
                if (attribute.Name.StartsWith("xmlns", StringComparison.Ordinal)) continue; // namespace names, never fetched
                Assert.That(attribute.Value, Does.Not.Contain("http:").And.Not.Contain("https:"), $"{element.TagName} {attribute.Name}");
                Assert.That(attribute.Value.Replace("url(#", ""), Does.Not.Contain("url("), "only references inside the page");
            }
        foreach (var style in doc.QuerySelectorAll("style"))
            Assert.That(style.TextContent, Does.Not.Contain("url(").And.Not.Contain("@import"));
    }

    /// <summary>Opens the report in headless Chromium with every host unresolvable: nothing may
    /// log to the console (a failed fetch or a script error would).</summary>
    [Test]
    public void OpensInHeadlessChromiumWithoutConsoleErrors()
    {
        string? chromium = new[] { "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome" }.FirstOrDefault(File.Exists);
        if (chromium is null) Assert.Ignore("no headless Chromium installed (Debian: apt install chromium); the offline checks above still ran");
        var start = new ProcessStartInfo(chromium!)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            ArgumentList =
            {
                "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--host-resolver-rules=MAP * ~NOTFOUND",
                $"--user-data-dir={_dir.File("chromium-profile")}", "--virtual-time-budget=3000", "--dump-dom", new Uri(_dir.File("report.html")).AbsoluteUri,
            },
        };
        using var process = Process.Start(start)!;
        var stderrTask = process.StandardError.ReadToEndAsync();
        string dom = process.StandardOutput.ReadToEnd();
        Assert.That(process.WaitForExit(120_000), "Chromium finished");
        string stderr = stderrTask.Result;
        Assert.That(process.ExitCode, Is.EqualTo(0), stderr);
        Assert.That(dom, Does.Contain("Per-layer output error"), "the page rendered");
        var console = stderr.Split('\n').Where(l => l.Contains("CONSOLE", StringComparison.Ordinal)).ToList();
        Assert.That(console, Is.Empty, string.Join("\n", console));
    }
}
