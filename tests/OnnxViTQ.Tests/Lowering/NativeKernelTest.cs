using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Ir;
using OnnxViTQ.Runtime;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Lowering;

/// <summary>What the runtime-ops kernel tests share: skipped without the library, the kernel path
/// forced per case with ONNXVITQ_ISA and reset after, outputs compared relative to their largest
/// value. Subclasses are [NonParallelizable]: the forced path is process-wide.</summary>
public abstract class NativeKernelTest
{
    /// <summary>Every kernel path this CPU runs (the names only, when the library is missing).</summary>
    protected static IEnumerable<string> SupportedPaths() =>
        NativeOps.IsAvailable ? NativeOps.SupportedPaths.Split(',') : ["scalar", "avx2", "avx512vnni"];

    [SetUp]
    public void RequireLibrary()
    {
        NativeOpsAvailability.Require();
    }

    [TearDown]
    public void ResetPath() => ForcePath(null);

    /// <summary>Sets ONNXVITQ_ISA in the process environment the library reads with getenv (on
    /// Unix, Environment.SetEnvironmentVariable changes only .NET's own copy: the library never
    /// saw it, and every "forced" case ran the default path).</summary>
    protected static void ForcePath(string? path)
    {
        int rc = path is null ? unsetenv("ONNXVITQ_ISA") : setenv("ONNXVITQ_ISA", path, 1);
        if (rc != 0) throw new InvalidOperationException($"setenv ONNXVITQ_ISA={path} failed");
        Environment.SetEnvironmentVariable("ONNXVITQ_ISA", path);
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int setenv(string name, string value, int overwrite);

    [DllImport("libc", SetLastError = true)]
    private static extern int unsetenv(string name);

    /// <summary>Output "y" of a one-op model run by ONNX Runtime (2 intra-op threads, the native ops
    /// registered) on float inputs given by name.</summary>
    protected static float[] RunModel(byte[] model, params (string Name, float[] Data, long[] Shape)[] inputs)
    {
        using var options = Ort.Options();
        options.IntraOpNumThreads = 2;
        using var session = new InferenceSession(model, options);
        var values = inputs.Select(i => OrtValue.CreateTensorValueFromMemory(i.Data, i.Shape)).ToList();
        try
        {
            using var run = new RunOptions();
            using var outputs = session.Run(run, inputs.Select(i => i.Name).ToList(), values, ["y"]);
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    /// <summary>A node of <paramref name="op"/> in <paramref name="g"/>, checked against the op's
    /// schema as the compiler's own nodes are — unless <paramref name="check"/> is false: the tests
    /// of the kernels' own refusals write nodes the schema would not let through.</summary>
    private protected static Value Node(Graph g, NativeOpSchema op, IReadOnlyList<Value?> inputs, IEnumerable<AttributeValue> attributes, string name, bool check) =>
        (check ? op.Node(g, inputs, "y", attributes.ToList(), name) : g.AddNode(op.OpType, inputs, ["y"], attributes, op.Domain, name)).Output();

    protected static void AssertClose(float[] actual, float[] expected, string what, double relative)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length));
        double scale = expected.Max(v => Math.Abs(v)) + 1e-6;
        double worst = 0;
        for (int i = 0; i < actual.Length; i++) worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        Assert.That(worst / scale, Is.LessThan(relative), $"{what}: max |Δ| {worst:g3} against max |y| {scale:g3}");
    }
}
