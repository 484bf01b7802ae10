using OnnxViTQ.Passes.Search;

namespace OnnxViTQ.Tests.Search;

public class BitAllocationTests
{
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    [TestCase(4)]
    public void MatchesExhaustiveSearch(int seed)
    {
        var rng = new Random(seed);
        int[] widths = [4, 5, 6, 7, 8];
        var modules = Enumerable.Range(0, 6).Select(i => new BitAllocation.Module($"m{i}", 1536L * rng.Next(1, 4),
            // sensitivity falls with the width, at a module-specific rate
            widths.ToDictionary(b => b, b => rng.NextDouble() * 10 * Math.Pow(2, -2 * (b - 4) * (0.5 + rng.NextDouble()))))).ToList();
        double average = 5 + rng.NextDouble() * 1.5;
        var chosen = BitAllocation.Solve(modules, average)!;

        double Cost(int[] bits) => bits.Select((b, i) => modules[i].Sensitivity[b]).Sum();
        bool Fits(int[] bits) => bits.Select((b, i) => (double)b * modules[i].Weights).Sum() <= average * modules.Sum(m => m.Weights) + 1e-6;
        double best = double.PositiveInfinity;
        foreach (var combination in Combinations(modules.Count, widths))
            if (Fits(combination)) best = Math.Min(best, Cost(combination));
        Assert.That(Fits(chosen), "the average is respected");
        Assert.That(Cost(chosen), Is.EqualTo(best).Within(1e-12), "the optimum, not a greedy guess");
    }

    [Test]
    public void ImpossibleBudgetIsNull()
    {
        var modules = new[] { new BitAllocation.Module("a", 10, new Dictionary<int, double> { [6] = 1, [8] = 0 }) };
        Assert.That(BitAllocation.Solve(modules, 5), Is.Null);
    }

    [Test]
    public void WiderModulesCostMoreBudget()
    {
        // Equal sensitivities per bit; the narrow module is cheaper to raise, so it gets the extra bits.
        var s = new Dictionary<int, double> { [4] = 10, [8] = 0 };
        var modules = new[] { new BitAllocation.Module("wide", 3000, s), new BitAllocation.Module("narrow", 1000, s) };
        Assert.That(BitAllocation.Solve(modules, 5), Is.EqualTo(new[] { 4, 8 }));
    }

    private static IEnumerable<int[]> Combinations(int n, int[] widths)
    {
        if (n == 0) { yield return []; yield break; }
        foreach (var rest in Combinations(n - 1, widths))
            foreach (var b in widths) yield return [.. rest, b];
    }
}
