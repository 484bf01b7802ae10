namespace OnnxViTQ.Passes.Search;

/// <summary>
/// Exact choice of one bit width per module minimising the summed sensitivity under an average
/// bit budget weighted by each module's weight count: a knapsack solved by dynamic programming
/// over the budget used so far (weights divided by their greatest common divisor, so ViT modules
/// — multiples of the embedding width — give a handful of states).
/// </summary>
internal static class BitAllocation
{
    /// <summary>A module: its weight count and its sensitivity at each allowed bit width.</summary>
    public sealed record Module(string Name, long Weights, IReadOnlyDictionary<int, double> Sensitivity);

    /// <summary>Bits per module (in input order), or null when even the smallest widths exceed the budget.</summary>
    public static int[]? Solve(IReadOnlyList<Module> modules, double averageBits)
    {
        if (modules.Count == 0) return [];
        long g = modules.Select(m => m.Weights).Aggregate(Gcd);
        var units = modules.Select(m => m.Weights / g).ToArray();
        long budget = (long)Math.Floor(averageBits * units.Sum() + 1e-9);
        // state: budget used → (least cost, choices so far)
        var states = new Dictionary<long, (double Cost, int[] Bits)> { [0] = (0, []) };
        for (int i = 0; i < modules.Count; i++)
        {
            var next = new Dictionary<long, (double Cost, int[] Bits)>();
            foreach (var (used, (cost, bits)) in states)
                foreach (var (b, s) in modules[i].Sensitivity)
                {
                    long u = used + units[i] * b;
                    if (u > budget) continue;
                    double c = cost + s;
                    if (!next.TryGetValue(u, out var best) || c < best.Cost || (c == best.Cost && Compare(bits, b, best.Bits) > 0))
                        next[u] = (c, [.. bits, b]);
                }
            if (next.Count > 5_000_000) throw new InvalidOperationException("mixed precision: too many budget states (module weight counts share no common factor)");
            states = next;
        }
        if (states.Count == 0) return null;
        return states.Values.OrderBy(s => s.Cost).ThenByDescending(s => s.Bits.Sum()).First().Bits;
    }

    private static int Compare(int[] prefix, int last, int[] other)
    {
        for (int i = 0; i < prefix.Length; i++) if (prefix[i] != other[i]) return prefix[i].CompareTo(other[i]);
        return last.CompareTo(other[^1]);
    }

    private static long Gcd(long a, long b) => b == 0 ? a : Gcd(b, a % b);
}
