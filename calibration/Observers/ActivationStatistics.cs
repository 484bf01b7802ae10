using OnnxViTQ.Ir;

namespace OnnxViTQ.Observers;

/// <summary>Observer state per calibrated activation and observer key, produced by calibration.
/// Reparameterizations that change an activation exactly (a per-channel affine map) update its
/// observers through <see cref="Replace"/>.</summary>
internal sealed class ActivationStatistics(IReadOnlyDictionary<(Value, string), IObserver> observers, long samples)
{
    private readonly Dictionary<(Value, string), IObserver> _observers = new(observers);

    public long Samples { get; } = samples;
    public IReadOnlyDictionary<(Value Value, string Key), IObserver> Observers => _observers;

    public bool Has(Value v, string key) => _observers.ContainsKey((v, key));

    public T Get<T>(Value v, string key) where T : class, IObserver =>
        _observers.TryGetValue((v, key), out var o)
            ? o as T ?? throw new InvalidOperationException($"observer '{key}' of '{v.Name}' is {o.GetType().Name}, not {typeof(T).Name}")
            : throw new InvalidOperationException($"activation '{v.Name}' has no '{key}' statistics (was it calibrated for this quantizer?)");

    public IEnumerable<(string Key, IObserver Observer)> For(Value v) =>
        _observers.Where(kv => ReferenceEquals(kv.Key.Item1, v)).Select(kv => (kv.Key.Item2, kv.Value));

    public void Replace(Value v, string key, IObserver observer) => _observers[(v, key)] = observer;

    public void Remove(Value v, string key) => _observers.Remove((v, key));
}

/// <summary>Keys of the observers the quantizer kinds share.</summary>
internal static class ObserverKeys
{
    public const string MinMax = "minmax";
    public const string Histogram = "histogram";
    public const string Channels = "channels";
    public const string Rows = "rows";
    public const string Slices = "slices";
    public const string FeatureChannels = "feature-channels";
}
