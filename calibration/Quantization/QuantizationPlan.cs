using OnnxViTQ.Ir;

namespace OnnxViTQ.Quantization;

/// <summary>The measured error of a site's quantizer on calibration data (activations: a sample
/// of calibration rows; weights: the whole tensor).</summary>
internal sealed record QuantizationError(double SqnrDb, double Cosine, long Elements);

/// <summary>
/// One quantization site: a value and the uses that read its quantized form (other uses keep
/// the float value), its role, the quantizer spec chosen for it and, once fitted, the
/// quantizer's parameters (weights: integer codes included, so a later pass that changes the
/// rounding is what gets emitted). Passes refine sites with <see cref="QuantizationPlan.Update"/>.
/// </summary>
internal sealed record QuantizationSite
{
    public required Value Value { get; init; }
    public required IReadOnlyList<Use> Uses { get; init; }
    public required TensorRole Role { get; init; }

    /// <summary>Weights: the output-channel axis of the tensor (null: no channel axis, per tensor).</summary>
    public int? ChannelAxis { get; init; }

    /// <summary>The attention or MLP module the site belongs to ("attention 3", "mlp 3"), if known.</summary>
    public string Module { get; init; } = "";

    public QuantizerSpec? Spec { get; init; }
    public FittedQuantizer? Parameters { get; init; }
    public QuantizationError? Error { get; init; }

    /// <summary>Why the site has its role or quantizer (fallbacks, reparameterizations).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];

    public string Name => Value.Name;
    public bool IsWeight => Role == TensorRole.Weight;
    public Granularity? Granularity => Parameters?.Granularity ?? (Spec is null ? null : Spec.KindInfo.GranularityOf(this));

    public QuantizationSite WithNote(string note) => this with { Notes = [.. Notes, note] };
}

/// <summary>
/// Every quantization site of a model, one entry per value. Built once by site selection;
/// later passes refine entries (role, spec, parameters, error) through <see cref="Update"/>, so
/// the report, the portable emitter and every lowering read one source.
/// </summary>
internal sealed class QuantizationPlan
{
    private readonly List<QuantizationSite> _sites = [];
    private readonly Dictionary<Value, int> _index = [];

    public IReadOnlyList<QuantizationSite> Sites => _sites;
    public IEnumerable<QuantizationSite> Weights => _sites.Where(s => s.IsWeight);
    public IEnumerable<QuantizationSite> Activations => _sites.Where(s => !s.IsWeight);

    public void Add(QuantizationSite site)
    {
        if (_index.ContainsKey(site.Value)) throw new InvalidOperationException($"'{site.Name}' is already in the quantization plan");
        _index[site.Value] = _sites.Count;
        _sites.Add(site);
    }

    /// <summary>Replaces the entry of <paramref name="site"/>'s value.</summary>
    public void Update(QuantizationSite site)
    {
        if (!_index.TryGetValue(site.Value, out int i)) throw new InvalidOperationException($"'{site.Name}' is not in the quantization plan");
        _sites[i] = site;
    }

    public QuantizationSite For(Value v) =>
        _index.TryGetValue(v, out int i) ? _sites[i] : throw new InvalidOperationException($"'{v.Name}' is not in the quantization plan");

    public bool TryGet(Value v, out QuantizationSite site)
    {
        if (_index.TryGetValue(v, out int i)) { site = _sites[i]; return true; }
        site = null!;
        return false;
    }

    /// <summary>The reads kept in float by exclusions (<see cref="Exclusions"/>), for the reports.</summary>
    public IReadOnlyList<ExcludedRead> Excluded => _excluded;

    private readonly List<ExcludedRead> _excluded = [];

    public void RecordExclusion(ExcludedRead read) => _excluded.Add(read);

    /// <summary>Takes <paramref name="v"/>'s site out of the plan.</summary>
    public void Remove(Value v)
    {
        if (!_index.TryGetValue(v, out int i)) throw new InvalidOperationException($"'{v.Name}' is not in the quantization plan");
        _sites.RemoveAt(i);
        _index.Clear();
        for (int j = 0; j < _sites.Count; j++) _index[_sites[j].Value] = j;
    }

    /// <summary>Nodes with at least one quantized input.</summary>
    public IReadOnlyList<Node> QuantizedNodes => _sites.SelectMany(s => s.Uses).Select(u => u.Node).Distinct().ToList();
}
