using System.Text.RegularExpressions;
using OnnxViTQ.Quantization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.PassInfra;

/// <summary>
/// Passes decide by capability (calibration/Quantization/Capabilities.cs), never by quantizer
/// class or kind name: no file under passes/ names a quantizer class (every fitted form and kind
/// the calibration assembly defines) or compares a kind string. Recipes may name kinds as data
/// (<c>new("log2")</c>); what they may not do is branch on one.
/// </summary>
public class CapabilityRuleTests
{
    private static IEnumerable<string> PassFiles() =>
        Directory.EnumerateFiles(Path.Combine(Repo.Root, "passes"), "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"));

    /// <summary>Every quantizer class: the fitted forms and the kinds.</summary>
    private static List<string> QuantizerClasses() =>
        typeof(FittedQuantizer).Assembly.GetTypes()
            .Where(t => t.IsClass && (t.IsSubclassOf(typeof(FittedQuantizer)) || typeof(IQuantizerKind).IsAssignableFrom(t)))
            .Select(t => t.Name).ToList();

    [Test]
    public void TheScanSeesTheQuantizerClasses()
    {
        var classes = QuantizerClasses();
        Assert.That(classes, Does.Contain("UniformQuantizer").And.Contain("LogQuantizer").And.Contain("ElementwiseQuantizer").And.Contain("TanQuantizerKind"));
        Assert.That(PassFiles().Count(), Is.GreaterThan(40));
    }

    [Test]
    public void NoPassNamesAQuantizerClass()
    {
        var names = new Regex($@"\b({string.Join("|", QuantizerClasses())})\b");
        var found = PassFiles().SelectMany(f => File.ReadLines(f).Select((line, i) => (File: Path.GetRelativePath(Repo.Root, f), Line: i + 1, Text: line)))
            .Where(l => names.IsMatch(l.Text)).Select(l => $"{l.File}:{l.Line}: {l.Text.Trim()}").ToList();
        Assert.That(found, Is.Empty, "ask for a capability (IIntegerGrid, IAdjustableStep, INativeActivation, IAcceptsDerivedGrid) instead");
    }

    [Test]
    public void NoPassComparesAKindString()
    {
        // Kind == "…", Kind != "…", Kind is "…", { Kind: "…" }, Kind.Equals("…").
        var comparison = new Regex(@"\bKind\s*(==|!=|\bis\b|:)\s*""|\bKind\s*\.\s*(Equals|StartsWith)\s*\(\s*""");
        var found = PassFiles().SelectMany(f => File.ReadLines(f).Select((line, i) => (File: Path.GetRelativePath(Repo.Root, f), Line: i + 1, Text: line)))
            .Where(l => comparison.IsMatch(l.Text)).Select(l => $"{l.File}:{l.Line}: {l.Text.Trim()}").ToList();
        Assert.That(found, Is.Empty);
    }
}
