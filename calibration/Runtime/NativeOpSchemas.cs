using System.Globalization;
using OnnxViTQ.Ir;

namespace OnnxViTQ.Runtime;

internal enum OpAttributeType { Int, Float, String }

/// <summary>What a float attribute may be (every one must be finite).</summary>
internal enum FloatDomain { Any, Positive, NonNegative, NonZero }

/// <summary>
/// One attribute of a <c>com.onnxvitq</c> op: its type, whether it is required (or its default),
/// the values the kernel accepts, and — for an optional one that a mode of the op needs — the
/// string attribute and values that make it required. Mirrors the op's schema in runtime-ops
/// (attributes.h); a test compares the two listings.
/// </summary>
internal sealed record OpAttribute(string Name, OpAttributeType Type)
{
    public bool Required { get; init; }
    public long IntDefault { get; init; }
    public long Min { get; init; } = long.MinValue;
    public long Max { get; init; } = long.MaxValue;
    public float FloatDefault { get; init; }
    public FloatDomain Domain { get; init; }
    public IReadOnlyList<string> Values { get; init; } = [];
    public string? When { get; init; }
    public IReadOnlyList<string> WhenValues { get; init; } = [];

    public static OpAttribute Int(string name, long min, long max) => new(name, OpAttributeType.Int) { Required = true, Min = min, Max = max };
    public static OpAttribute Int(string name, long fallback, long min, long max) => new(name, OpAttributeType.Int) { IntDefault = fallback, Min = min, Max = max };
    public static OpAttribute Float(string name, FloatDomain domain) => new(name, OpAttributeType.Float) { Required = true, Domain = domain };
    public static OpAttribute Float(string name, float fallback, FloatDomain domain) => new(name, OpAttributeType.Float) { FloatDefault = fallback, Domain = domain };
    public static OpAttribute String(string name, bool required, params string[] values) => new(name, OpAttributeType.String) { Required = required, Values = values };
    public OpAttribute RequiredWhen(string attribute, params string[] values) => this with { When = attribute, WhenValues = values };

    /// <summary>Why <paramref name="v"/> is not a value the kernel accepts, or null.</summary>
    public string? Problem(AttributeValue v)
    {
        switch (Type)
        {
            case OpAttributeType.Int when v.Kind == AttributeKind.Int:
                long i = v.AsInt();
                return i < Min || i > Max ? $"must be {Min}..{Max}, not {i}" : null;
            case OpAttributeType.Float when v.Kind == AttributeKind.Float:
                float f = v.AsFloat();
                bool ok = float.IsFinite(f) && Domain switch
                {
                    FloatDomain.Positive => f > 0,
                    FloatDomain.NonNegative => f >= 0,
                    FloatDomain.NonZero => f != 0,
                    _ => true,
                };
                return ok ? null : $"must be {Describe(Domain)}, not {f.ToString(CultureInfo.InvariantCulture)}";
            case OpAttributeType.String when v.Kind == AttributeKind.String:
                return Values.Contains(v.AsString()) ? null : $"must be one of {string.Join(", ", Values)}, not '{v.AsString()}'";
            default:
                return $"must be {(Type == OpAttributeType.Int ? "an int" : Type == OpAttributeType.Float ? "a float" : "a string")}";
        }
    }

    public static string Describe(FloatDomain d) => d switch
    {
        FloatDomain.Positive => "positive and finite",
        FloatDomain.NonNegative => "finite and ≥ 0",
        FloatDomain.NonZero => "finite and non-zero",
        _ => "finite",
    };

    /// <summary>This attribute's line of the schema listing (the C++ side's format).</summary>
    public string Listing(string op)
    {
        string type = Type switch { OpAttributeType.Int => "int", OpAttributeType.Float => "float", _ => "string" };
        string fallback = Required ? "-" : Type switch
        {
            OpAttributeType.Int => IntDefault.ToString(CultureInfo.InvariantCulture),
            OpAttributeType.Float => FloatDefault.ToString("R", CultureInfo.InvariantCulture),
            _ => Values[0],
        };
        string accepted = Type switch
        {
            OpAttributeType.Int => $"{Min}..{Max}",
            OpAttributeType.Float => Domain switch { FloatDomain.Positive => "positive", FloatDomain.NonNegative => "non-negative", FloatDomain.NonZero => "non-zero", _ => "any" },
            _ => string.Join("|", Values),
        };
        string when = When is null ? "-" : $"{When}={string.Join("|", WhenValues)}";
        return $"{op}\tattribute\t{Name}\t{type}\t{(Required ? "required" : "optional")}\t{fallback}\t{accepted}\t{when}";
    }
}

/// <summary>An input of a <c>com.onnxvitq</c> op: its element type, whether it may be absent, and
/// whether the kernel reads it once when it is created (it must then be an initializer).</summary>
internal sealed record OpInput(string Name, DataType Type, bool Optional = false, bool Initializer = false);

/// <summary>
/// A <c>com.onnxvitq</c> op as the C++ kernel reads it: inputs, outputs and typed attributes with
/// their checks, declared once. Every node of the op the compiler writes — lowerings, fusions,
/// the bench's single-op models, the kernel tests — goes through <c>Node</c>, which checks
/// the node against the declaration, so a misspelt or out-of-range attribute is a compile-time
/// failure of ours, not a session error on a user's machine.
/// </summary>
internal sealed record NativeOpSchema(string OpType, IReadOnlyList<OpInput> Inputs, IReadOnlyList<OpInput> Outputs, IReadOnlyList<OpAttribute> Attributes)
{
    public string Domain => NativeOps.Domain;

    /// <summary>The declared attribute <paramref name="name"/> of type <paramref name="type"/>.</summary>
    public OpAttribute Attribute(string name, OpAttributeType type) =>
        Attributes.FirstOrDefault(a => a.Name == name && a.Type == type)
        ?? throw new InvalidOperationException($"{Domain}.{OpType} declares no {type.ToString().ToLowerInvariant()} attribute '{name}'");

    public AttributeValue Int(string name, long value) => Checked(AttributeValue.Int(Attribute(name, OpAttributeType.Int).Name, value));
    public AttributeValue Float(string name, float value) => Checked(AttributeValue.Float(Attribute(name, OpAttributeType.Float).Name, value));
    public AttributeValue String(string name, string value) => Checked(AttributeValue.String(Attribute(name, OpAttributeType.String).Name, value));

    private AttributeValue Checked(AttributeValue v) =>
        Attributes.First(a => a.Name == v.Name).Problem(v) is { } why ? throw new InvalidOperationException($"{Domain}.{OpType}: attribute '{v.Name}' {why}") : v;

    /// <summary>Why a node with these inputs and attributes would be refused by the kernel, or null.</summary>
    public string? Problem(IReadOnlyList<Value?> inputs, IReadOnlyList<AttributeValue> attributes)
    {
        if (inputs.Count > Inputs.Count) return $"{inputs.Count} inputs, at most {Inputs.Count}";
        for (int i = 0; i < Inputs.Count; i++)
        {
            var v = i < inputs.Count ? inputs[i] : null;
            if (v is null)
            {
                if (!Inputs[i].Optional) return $"input {i} ({Inputs[i].Name}) is missing";
                continue;
            }
            if (Inputs[i].Initializer && !v.IsInitializer) return $"input {i} ({Inputs[i].Name}) must be an initializer";
            if (v.Type is { } t && t.ElementType != Inputs[i].Type) return $"input {i} ({Inputs[i].Name}) is {t.ElementType}, not {Inputs[i].Type}";
        }
        foreach (var a in attributes)
        {
            var declared = Attributes.FirstOrDefault(d => d.Name == a.Name);
            if (declared is null) return $"attribute '{a.Name}' is not declared";
            if (declared.Problem(a) is { } why) return $"attribute '{a.Name}' {why}";
        }
        foreach (var d in Attributes)
        {
            if (attributes.Any(a => a.Name == d.Name)) continue;
            if (d.Required) return $"attribute '{d.Name}' is missing";
            if (d.When is { } mode)
            {
                string value = attributes.FirstOrDefault(a => a.Name == mode)?.AsString() ?? Attributes.First(x => x.Name == mode).Values[0];
                if (d.WhenValues.Contains(value)) return $"attribute '{d.Name}' is missing ({mode} '{value}' needs it)";
            }
        }
        return null;
    }

    /// <summary>A node of this op before <paramref name="before"/>, checked against the schema.</summary>
    public Node Node(Graph graph, IReadOnlyList<Value?> inputs, string output, IReadOnlyList<AttributeValue> attributes, string? name = null, Node? before = null)
    {
        if (Problem(inputs, attributes) is { } why) throw new InvalidOperationException($"{Domain}.{OpType} node '{name ?? output}': {why}");
        return graph.AddNode(OpType, inputs, [output], attributes, Domain, name, before: before);
    }

    /// <summary>A node of this op added by a rewrite rule (before its anchor, or <paramref name="before"/>),
    /// checked against the schema; the rule must declare the <c>com.onnxvitq</c> opset.</summary>
    public Node Node(Patterns.Rewriter r, IReadOnlyList<Value?> inputs, string output, IReadOnlyList<AttributeValue> attributes, string? name = null, Node? before = null)
    {
        if (Problem(inputs, attributes) is { } why) throw new InvalidOperationException($"{Domain}.{OpType} node '{name ?? output}': {why}");
        return r.AddNode(OpType, inputs, [output], attributes, Domain, name, before);
    }

    /// <summary>The opset its nodes need.</summary>
    public static OpsetImport Opset => new(NativeOps.Domain, 1);

    /// <summary>The schema listing in the format of the library's OnnxViTQOpsSchemas.</summary>
    public IEnumerable<string> Listing()
    {
        string Type(DataType t) => t switch { DataType.Float => "float", DataType.UInt8 => "uint8", _ => "other" };
        foreach (var (input, i) in Inputs.Select((x, i) => (x, i)))
            yield return $"{OpType}\tinput\t{i}\t{Type(input.Type)}\t{(input.Optional ? "optional" : "required")}";
        foreach (var (output, i) in Outputs.Select((x, i) => (x, i)))
            yield return $"{OpType}\toutput\t{i}\t{Type(output.Type)}\t{(output.Optional ? "optional" : "required")}";
        foreach (var a in Attributes) yield return a.Listing(OpType);
    }
}

/// <summary>The <c>com.onnxvitq</c> ops (runtime-ops/src/quantized_*.h say what each computes).</summary>
internal static class NativeOpSchemas
{
    /// <summary>Largest K of the linear op's exact int32 sums (kernels.h kMaxDepth).</summary>
    public const long MaxDepth = 65536;

    /// <summary>Operand code range of the product ops (operand_quantizer.h kCodeLimit).</summary>
    public const long CodeLimit = 65536;

    public static NativeOpSchema QuantizedLinear { get; } = new("QuantizedLinear",
        [
            new("x", DataType.Float), new("packed_weight", DataType.UInt8, Initializer: true), new("weight_scale", DataType.Float, Initializer: true),
            new("bias", DataType.Float, Optional: true, Initializer: true), new("layernorm_scale", DataType.Float, Optional: true, Initializer: true),
            new("layernorm_bias", DataType.Float, Optional: true, Initializer: true),
        ],
        [new("y", DataType.Float)],
        [
            OpAttribute.Int("k", 1, MaxDepth),
            OpAttribute.Int("n", 1, int.MaxValue),
            OpAttribute.Int("weight_bits", 8, 4, 8),
            OpAttribute.String("activation", true, "token", "static", "shift-log2"),
            OpAttribute.Int("activation_bits", 8, 2, 8).RequiredWhen("activation", "shift-log2"),
            OpAttribute.Float("outlier_alpha", 0f, FloatDomain.NonNegative),
            OpAttribute.Float("activation_scale", 1f, FloatDomain.Positive).RequiredWhen("activation", "static", "shift-log2"),
            OpAttribute.Int("activation_zero_point", 0, 0, 255).RequiredWhen("activation", "static"),
            OpAttribute.Int("activation_qmin", 0, 0, 255),
            OpAttribute.Int("activation_qmax", 255, 0, 255),
            OpAttribute.Float("activation_shift", 0f, FloatDomain.Any).RequiredWhen("activation", "shift-log2"),
            OpAttribute.Float("activation_epsilon", 0f, FloatDomain.NonNegative).RequiredWhen("activation", "shift-log2"),
            OpAttribute.Float("layernorm_epsilon", 1e-5f, FloatDomain.NonNegative),
            OpAttribute.String("epilogue", false, "none", "gelu"),
        ]);

    public static NativeOpSchema QuantizedMatMul { get; } = new("QuantizedMatMul",
        [new("a", DataType.Float), new("b", DataType.Float)],
        [new("y", DataType.Float)],
        [
            OpAttribute.String("a_kind", false, "uniform", "log2"),
            OpAttribute.Int("a_bits", 8, 2, 8).RequiredWhen("a_kind", "log2"),
            .. Operand("a", "a_kind", "uniform"),
            .. Operand("b"),
        ]);

    public static NativeOpSchema QuantizedAttention { get; } = new("QuantizedAttention",
        [new("qkv", DataType.Float)],
        [new("y", DataType.Float)],
        [
            OpAttribute.Int("heads", 1, 4096),
            OpAttribute.String("layout", false, "tbd"),
            OpAttribute.Float("q_divisor", 1f, FloatDomain.NonZero),
            .. Operand("q"), .. Operand("k"), .. Operand("p"), .. Operand("v"),
        ]);

    public static IReadOnlyList<NativeOpSchema> All { get; } = [QuantizedLinear, QuantizedMatMul, QuantizedAttention];

    /// <summary>A product operand's grid p_scale, p_zero_point, p_qmin, p_qmax: required, or (with
    /// <paramref name="when"/>) required in that mode only — the scale always.</summary>
    private static IEnumerable<OpAttribute> Operand(string p, string? when = null, string? value = null)
    {
        OpAttribute Code(string suffix) => when is null
            ? OpAttribute.Int($"{p}_{suffix}", -CodeLimit, CodeLimit)
            : OpAttribute.Int($"{p}_{suffix}", 0, -CodeLimit, CodeLimit).RequiredWhen(when, value!);
        return [OpAttribute.Float($"{p}_scale", FloatDomain.Positive), Code("zero_point"), Code("qmin"), Code("qmax")];
    }
}
