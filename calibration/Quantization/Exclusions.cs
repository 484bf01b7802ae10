using System.Text.RegularExpressions;
using OnnxViTQ.Ir;

namespace OnnxViTQ.Quantization;

/// <summary>
/// What the user keeps in float (<c>--exclude</c>, <c>QuantizationOptions.Exclude</c>, a recipe
/// override of kind <c>float</c>). A pattern is a node name, a tensor name, an op type ("Conv"), a
/// module ("mlp 11", "head", as <c>inspect</c> prints them) or, after <c>re:</c>, a regular
/// expression searched in node names. An excluded node keeps every input in float; an excluded
/// tensor is quantized for none of its readers.
/// </summary>
internal sealed class Exclusions
{
    public const string RegexPrefix = "re:";
    private readonly List<(string Pattern, Regex? Regex)> _patterns = [];

    public Exclusions(IEnumerable<string> patterns)
    {
        foreach (var p in patterns)
        {
            if (string.IsNullOrWhiteSpace(p)) throw new OnnxViTQException("an exclusion is empty; give a node, tensor, op type, module or re:<regular expression>");
            Regex? regex = null;
            if (p.StartsWith(RegexPrefix, StringComparison.Ordinal))
            {
                try { regex = new Regex(p[RegexPrefix.Length..], RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)); }
                catch (ArgumentException e) { throw new OnnxViTQException($"exclusion '{p}' is not a valid regular expression: {e.Message}"); }
            }
            if (!_patterns.Any(x => x.Pattern == p)) _patterns.Add((p, regex));
        }
    }

    public static Exclusions None { get; } = new([]);

    public bool IsEmpty => _patterns.Count == 0;

    public IReadOnlyList<string> Patterns => _patterns.Select(p => p.Pattern).ToList();

    /// <summary>The first pattern that keeps <paramref name="node"/>'s read of <paramref name="site"/>
    /// in float, or null; <paramref name="nodeModules"/> are the modules of the sites the node reads.</summary>
    public string? Excluding(QuantizationSite site, Node node, IReadOnlyCollection<string> nodeModules)
    {
        foreach (var (pattern, regex) in _patterns)
        {
            bool match;
            try
            {
                match = regex is not null
                    ? regex.IsMatch(node.Name)
                    : pattern == node.Name || pattern == site.Name || pattern == node.OpType || nodeModules.Contains(pattern);
            }
            catch (RegexMatchTimeoutException)
            {
                throw new OnnxViTQException($"exclusion '{pattern}' took over a second on node name '{node.Name}'; simplify the regular expression");
            }
            if (match) return pattern;
        }
        return null;
    }

    /// <summary>
    /// Takes what <paramref name="plan"/>'s patterns exclude out of it: each excluded read leaves
    /// its site's uses (a site left with none leaves the plan) and is listed in
    /// <see cref="QuantizationPlan.Excluded"/>. A pattern that matches nothing is an error, before
    /// any calibration: a typo must not silently quantize the layer the user meant to keep.
    /// </summary>
    public void Apply(QuantizationPlan plan, string where)
    {
        if (IsEmpty) return;
        var modules = new Dictionary<Node, HashSet<string>>();
        foreach (var site in plan.Sites)
            foreach (var use in site.Uses)
            {
                if (!modules.TryGetValue(use.Node, out var set)) modules[use.Node] = set = [];
                if (site.Module.Length > 0) set.Add(site.Module);
            }
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var site in plan.Sites.ToList())
        {
            var keep = new List<Use>();
            foreach (var use in site.Uses)
            {
                if (Excluding(site, use.Node, modules[use.Node]) is { } pattern)
                {
                    used.Add(pattern);
                    plan.RecordExclusion(new ExcludedRead(site.Name, use.Node.Name, use.Node.OpType, use.InputIndex, site.Role.Name(),
                        modules[use.Node].FirstOrDefault() ?? "", pattern));
                }
                else keep.Add(use);
            }
            if (keep.Count == site.Uses.Count) continue;
            if (keep.Count == 0) plan.Remove(site.Value);
            else plan.Update(site with { Uses = keep });
        }
        if (_patterns.FirstOrDefault(p => !used.Contains(p.Pattern)) is { Pattern: { } unused })
            throw new OnnxViTQException($"{where}: exclusion '{unused}' matches no quantized node, tensor, op type or module of the model (`onnxvitq inspect` lists them)");
    }
}

/// <summary>One read a quantized model keeps in float: the tensor, the node reading it (op, input
/// index), the tensor's role, the node's module, and the pattern that excluded it.</summary>
internal sealed record ExcludedRead(string Tensor, string Node, string OpType, int Input, string Role, string Module, string Pattern);
