using OnnxViTQ.Ir;

namespace OnnxViTQ.Quantization;

public enum TensorRole { Weight, Activation }

/// <summary>Input <see cref="InputIndex"/> of <see cref="Node"/> is to be quantized.
/// Weights carry the axis of their output channels.</summary>
public sealed record QuantizationTarget(Node Node, int InputIndex, TensorRole Role, int? ChannelAxis)
{
    public Value Value => Node.Inputs[InputIndex] ?? throw new InvalidOperationException($"node '{Node.Name}' input {InputIndex} is absent");
    public Use Use => new(Node, InputIndex);
}

/// <summary>The inputs a recipe quantizes, found by target selection; one list per run.</summary>
public sealed class QuantizationTargets(IEnumerable<QuantizationTarget> targets)
{
    public IReadOnlyList<QuantizationTarget> All { get; } = targets.ToList();

    /// <summary>Nodes with at least one quantized input.</summary>
    public IReadOnlyList<Node> Nodes => All.Select(t => t.Node).Distinct().ToList();

    /// <summary>Distinct activation values to calibrate.</summary>
    public IReadOnlyList<Value> Activations => All.Where(t => t.Role == TensorRole.Activation).Select(t => t.Value).Distinct().ToList();
}

/// <summary>How one value is quantized, and which uses read the quantized form (other uses keep
/// reading the float value).</summary>
public sealed record TensorQuantization(Value Value, TensorRole Role, IQuantizer Quantizer, IReadOnlyList<Use> Uses);

/// <summary>For every quantized tensor its quantizer, bits and parameters. Reports and both
/// emitters read it.</summary>
public sealed class QuantizationPlan
{
    private readonly List<TensorQuantization> _entries = [];

    public IReadOnlyList<TensorQuantization> Entries => _entries;

    public void Add(TensorQuantization entry)
    {
        if (_entries.Any(e => ReferenceEquals(e.Value, entry.Value)))
            throw new InvalidOperationException($"'{entry.Value.Name}' is already in the quantization plan");
        _entries.Add(entry);
    }
}
