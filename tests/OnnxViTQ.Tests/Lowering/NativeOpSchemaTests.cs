using System.Globalization;
using OnnxViTQ.Ir;
using OnnxViTQ.Runtime;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Lowering;

/// <summary>
/// The C# declaration of every com.onnxvitq op (<see cref="NativeOpSchemas"/>, which every node
/// the compiler writes goes through) and the C++ kernels' own (runtime-ops, attributes.h; listed
/// by the library's OnnxViTQOpsSchemas) agree on every input, output and attribute: name, type,
/// required or default, accepted values and the mode that requires it.
/// </summary>
public class NativeOpSchemaTests
{
    /// <summary>Lines with float defaults written as numbers (C++ %.9g and .NET "R" spell them differently).</summary>
    private static IEnumerable<string> Normalised(IEnumerable<string> lines) => lines.Select(line =>
    {
        var f = line.Split('\t');
        if (f is [_, "attribute", _, "float", "optional", var d, ..]) f[5] = float.Parse(d, CultureInfo.InvariantCulture).ToString("R", CultureInfo.InvariantCulture);
        return string.Join('\t', f);
    });

    [Test]
    public void TheCSharpAndCppSchemasAgree()
    {
        NativeOpsAvailability.Require();
        var cpp = Normalised(NativeOps.Schemas.Split('\n', StringSplitOptions.RemoveEmptyEntries)).ToList();
        var cs = Normalised(NativeOpSchemas.All.SelectMany(s => s.Listing())).ToList();
        Assert.That(cpp, Has.Count.GreaterThan(50));
        Assert.That(cs.Except(cpp), Is.Empty, "declared in C# only (or differently)");
        Assert.That(cpp.Except(cs), Is.Empty, "declared in C++ only (or differently)");
        Assert.That(cs, Is.EqualTo(cpp), "same order");
    }

    /// <summary>A node that breaks its schema is our bug: refused when it is written, naming the op
    /// and what is wrong, before any session sees it.</summary>
    [Test]
    public void NodesAreCheckedWhenTheyAreWritten()
    {
        var s = NativeOpSchemas.QuantizedLinear;
        var e = Assert.Throws<InvalidOperationException>(() => s.Int("kk", 3))!;
        Assert.That(e.Message, Is.EqualTo("com.onnxvitq.QuantizedLinear declares no int attribute 'kk'"));
        e = Assert.Throws<InvalidOperationException>(() => s.Int("k", 70000))!;
        Assert.That(e.Message, Is.EqualTo("com.onnxvitq.QuantizedLinear: attribute 'k' must be 1..65536, not 70000"));
        e = Assert.Throws<InvalidOperationException>(() => s.String("activation", "channel"))!;
        Assert.That(e.Message, Does.Contain("must be one of token, static, shift-log2, not 'channel'"));

        var g = new Graph("g");
        var x = g.AddInput("x", TensorTypeInfo.Of(DataType.Float, [2, 8]));
        var w = g.AddInitializer("w", Tensor.From<byte>(DataType.UInt8, [128], new byte[128]));
        var scale = g.AddInitializer("s", Tensor.FromFloats([1], [0.1f]));
        List<AttributeValue> staticWithoutScale = [s.Int("k", 8), s.Int("n", 5), s.String("activation", "static"), s.Int("activation_zero_point", 3)];
        e = Assert.Throws<InvalidOperationException>(() => s.Node(g, [x, w, scale], "y", staticWithoutScale, "linear"))!;
        Assert.That(e.Message, Is.EqualTo("com.onnxvitq.QuantizedLinear node 'linear': attribute 'activation_scale' is missing (activation 'static' needs it)"));
        e = Assert.Throws<InvalidOperationException>(() => s.Node(g, [x, x, scale], "y", [s.Int("k", 8), s.Int("n", 5), s.String("activation", "token")], "linear"))!;
        Assert.That(e.Message, Does.Contain("input 1 (packed_weight) must be an initializer"));
        var node = s.Node(g, [x, w, scale], "y", [s.Int("k", 8), s.Int("n", 5), s.String("activation", "token")], "linear");
        Assert.That((node.OpType, node.Domain), Is.EqualTo(("QuantizedLinear", NativeOps.Domain)));
    }
}
