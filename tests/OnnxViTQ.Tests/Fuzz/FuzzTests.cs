using OnnxViTQ.Fuzz;
using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Fuzz;

/// <summary>
/// The CI slice of the fuzz harness (the long run is the bench's <c>--only fuzz</c>, reported in
/// BENCHMARKS.md): the first mutants of the same seeds, every committed model and a native-format
/// model among the origins, through the command line. Any exit 70, escaping exception or hang fails
/// with the seed and the edit that reproduce it.
/// </summary>
public class FuzzTests
{
    [Test]
    public void MutatedModelsAreRefusedOrHandledNeverAnInternalError()
    {
        using var work = new TempDir();
        var origins = FuzzOrigins.Create(Repo.Models, work.Path);
        var run = new FuzzRun(work.Path, Repo.Calibration, Repo.EvalImages, Repo.EvalLabels);
        var result = run.Run(origins, mutants: 60, firstSeed: 1);

        Assert.That(result.Failures.Select(f => $"{f.Mutant.Origin} seed {f.Mutant.Seed} ({f.Mutant.Description}): {f.Command} → {f.What}"), Is.Empty);
        Assert.That(result.Mutants, Is.EqualTo(60));
        Assert.That(result.Refused, Is.GreaterThan(0), "hostile edits are refused");
        Assert.That(result.Quantized + result.Evaluated, Is.GreaterThan(0), "harmless edits still go all the way through");
    }

    /// <summary>A mutant is a function of its origin and seed: a failure reported with a seed can be replayed.</summary>
    [Test]
    public void MutantsAreReproducibleFromTheirSeed()
    {
        var bytes = File.ReadAllBytes(Repo.Model("vit.opset17.onnx"));
        var a = new ModelMutator("vit", bytes);
        var b = new ModelMutator("vit", bytes);
        int changed = 0;
        for (int seed = 0; seed < 50; seed++)
        {
            var (x, y) = (a.Mutate(seed), b.Mutate(seed));
            Assert.That((x.Description, x.Bytes), Is.EqualTo((y.Description, y.Bytes)), $"seed {seed}");
            if (!x.Bytes.AsSpan().SequenceEqual(bytes)) changed++;
        }
        Assert.That(changed, Is.GreaterThan(45), "nearly every seed changes the file");
    }
}
