using OnnxViTQ.Data;
using OnnxViTQ.Evaluation;
using OnnxViTQ.Quantization;
using OnnxViTQ.Serialization;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Quantizers;

/// <summary>
/// The architecture's promise, kept as a test: a new activation quantizer kind is one file
/// (<see cref="PowerOfTwoQuantizerKind"/>, in this project, not shipped) plus one registry line,
/// and every pass that asks for a capability it offers uses it — portable emission, the step
/// searches (search-intervals, optimize-activation-steps), the native lowering — with no pass
/// changed. [NonParallelizable]: the registration is process-wide while it lasts.
/// </summary>
[NonParallelizable]
public class PowerOfTwoKindTests
{
    private IDisposable? _registration;

    [SetUp]
    public void Register() => _registration = QuantizerRegistry.Register(new PowerOfTwoQuantizerKind());

    [TearDown]
    public void Unregister() => _registration?.Dispose();

    private static bool IsPowerOfTwo(float step) => MathF.Log2(step) is var e && e == MathF.Round(e);

    [Test]
    public void ItFitsSimulatesAndEmitsLikeEveryKind()
    {
        var data = QuantizerHarness.Uniform(64 * 48, 4, -2f, 5f);
        long[] shape = [64, 48];
        foreach (int bits in new[] { 4, 8 })
        {
            var q = QuantizerHarness.Fit("pow2-uniform", bits, data, shape, TensorRole.PostLayerNorm);
            Assert.That((q.Kind, q.Bits), Is.EqualTo(("pow2-uniform", bits)));
            Assert.That(IsPowerOfTwo(((PowerOfTwoQuantizer)q).Step), $"{q.Describe()["step"]}");
            Assert.That(QuantizerHarness.RunPortable(q, data, shape), Is.EqualTo(QuantizerHarness.Simulate(q, data, shape)));
        }
        var e = Assert.Throws<OnnxViTQException>(() => QuantizerRegistry.Spec("pow2-uniform", 8, TensorRole.Weight))!;
        Assert.That(e.Message, Does.Contain("applies to activations, not weights"));
    }

    /// <summary>Post-LayerNorm activations of the vit outlier variant at W4A4 as pow2-uniform, in a
    /// pipeline with both step searches and --format native: the searches move its steps (which
    /// stay powers of two, through the kind's own IAdjustableStep), the native lowering runs the
    /// qkv and fc1 layers it feeds as QuantizedLinear (its static grid), and the native model
    /// computes what the portable model of the same plan computes.</summary>
    [Test]
    public void ItTakesPartInTheSearchesAndTheNativeLowering()
    {
        NativeOpsAvailability.Require();
        const string file = "vit-outliers.opset17.onnx";
        var baseline = Recipes.Get("minmax");
        var recipe = baseline with
        {
            Name = "pow2-test",
            Passes = Recipes.Pipeline(refine: [new("optimize-activation-steps"), new("search-intervals")]),
            Quantizers = baseline.Quantizers with { Roles = new Dictionary<TensorRole, QuantizerChoice> { [TensorRole.PostLayerNorm] = new("pow2-uniform") } },
        };
        QuantizationResult Quantize(OutputFormat format, out byte[] bytes)
        {
            var model = OnnxModelReader.Load(Repo.Model(file));
            var options = new QuantizationOptions { Bits = BitWidths.Parse("W4A4"), CalibrationSamples = 128, Format = format };
            var r = Quantizer.Quantize(model, file, new NpyTensorSource(Repo.Calibration, null), options, recipe);
            bytes = OnnxModelWriter.ToBytes(model);
            return r;
        }
        var result = Quantize(OutputFormat.Native, out var native);
        Quantize(OutputFormat.Portable, out var portable);

        var pow2 = result.Plan.Activations.Where(s => s.Role == TensorRole.PostLayerNorm).ToList();
        Assert.That(pow2, Is.Not.Empty);
        foreach (var site in pow2)
        {
            Assert.That(site.Parameters, Is.TypeOf<PowerOfTwoQuantizer>(), site.Name);
            Assert.That(IsPowerOfTwo(((PowerOfTwoQuantizer)site.Parameters!).Step), $"{site.Name}: {string.Join("; ", site.Notes)}");
        }
        var moved = pow2.SelectMany(s => s.Notes).ToList();
        Assert.That(moved, Has.Some.StartsWith("activation step: range scaled by"), "optimize-activation-steps re-chose a pow2 step");
        Assert.That(moved, Has.Some.StartsWith("interval search: activation step"), "search-intervals re-chose a pow2 step");
        // Every linear layer the pow2 sites feed runs natively: their uses left the plan for QuantizedLinear.
        Assert.That(pow2.All(s => s.Uses.Count == 0), string.Join("; ", pow2.Where(s => s.Uses.Count > 0).Select(s => s.Name)));
        Assert.That(pow2.SelectMany(s => s.Notes), Has.None.Contains("kept portable"));

        // The native model computes the portable model's plan (the pow2 grids as QuantizedLinear's static grids).
        var eval = new LimitedSource(new NpyTensorSource(Repo.EvalImages, ImagePreprocessing.ForModel(OnnxModelReader.Parse(portable), 3, 28, 28)), 200);
        var agreement = LogitAgreement.Compare(ClassificationEvaluator.Logits(OnnxModelReader.Parse(portable), file, eval), ClassificationEvaluator.Logits(OnnxModelReader.Parse(native), file, eval));
        TestContext.Out.WriteLine($"pow2-uniform post-LN, W4A4, native against portable: {agreement}");
        Assert.That(agreement.Top1Agreement, Is.GreaterThanOrEqualTo(0.98));
        Assert.That(agreement.MeanCosine, Is.GreaterThan(0.999));
    }
}
