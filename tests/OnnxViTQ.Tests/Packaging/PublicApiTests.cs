namespace OnnxViTQ.Tests.Packaging;

/// <summary>The OnnxViTQ package's public surface is a deliberate list: anything else a user could
/// bind to would become a compatibility promise.</summary>
public class PublicApiTests
{
    private static readonly string[] Expected =
    [
        "OnnxViTQ.AccuracyResult", "OnnxViTQ.BitWidths", "OnnxViTQ.ExternalDataMode", "OnnxViTQ.ImageDataOptions", "OnnxViTQ.InputShape", "OnnxViTQ.MixedPrecision", "OnnxViTQ.OnnxQuantizer",
        "OnnxViTQ.OnnxViTQException", "OnnxViTQ.OutputFormat", "OnnxViTQ.PassTime", "OnnxViTQ.ProgressReport", "OnnxViTQ.QuantizationOptions",
        "OnnxViTQ.QuantizationSummary", "OnnxViTQ.QuantizeFileSettings",
    ];

    [Test]
    public void OnlyTheDocumentedTypesArePublic()
    {
        var assemblies = new[] { typeof(OnnxQuantizer).Assembly, typeof(BitWidths).Assembly, typeof(OnnxViTQException).Assembly };
        var exported = assemblies.Distinct().SelectMany(a => a.GetExportedTypes()).Select(t => t.FullName!).Order().ToArray();
        Assert.That(exported, Is.EqualTo(Expected.Order().ToArray()));
    }

    [Test]
    public void EveryPublicTypeLivesInTheRootNamespace()
    {
        foreach (var name in Expected) Assert.That(name.Count(c => c == '.'), Is.EqualTo(1), name);
    }
}
