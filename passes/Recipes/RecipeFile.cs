using System.Text.Json;
using OnnxViTQ.Quantization;

namespace OnnxViTQ;

/// <summary>
/// A user-defined recipe (<c>--recipe my.json</c>). Schema (every key optional except that a file
/// without <c>extends</c> needs <c>passes</c>):
/// <code>
/// {
///   "name": "my-recipe",
///   "description": "what it does",
///   "extends": "adfq",                       // start from a built-in recipe's passes and quantizers
///   "passes": ["canonicalize", "select-sites", ..., {"name": "fold-layernorm", "policy": "repq"}],
///   "remove": ["fuse-native-attention"],     // passes taken out, including those a format adds
///   "add": [{"name": "reconstruct", "after": "fit-quantizers", "iterations": 500}],  // inserted into the list (after or before a pass in it)
///   "quantizers": {                          // by role: weight, default (activations not listed),
///     "post-layernorm": {"kind": "outlier-split", "bits": 4, "options": {"max-outlier-ratio": "0.01"}},
///     "post-softmax": {"kind": "log2"}       // post-layernorm, post-gelu, post-softmax, query, key,
///   },                                       // value, attention-output, other
///   "overrides": {"tensor or node name": {"kind": "uniform", "bits": 8}, "head": {"kind": "float"}}
/// }
/// </code>
/// Quantizer kinds, options and bit widths are checked when the file is loaded; override names
/// are checked against the model before calibration. Errors name the file and the entry.
/// </summary>
internal static class RecipeFile
{
    public static Recipe Load(string path)
    {
        if (!File.Exists(path)) throw new OnnxViTQException($"recipe file '{path}' does not exist");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new OnnxViTQException($"recipe file '{path}' is not valid JSON: {e.Message}");
        }
        using (doc) return Parse(doc.RootElement, path);
    }

    public static Recipe Parse(JsonElement root, string path)
    {
        string at = $"recipe file '{path}'";
        if (root.ValueKind != JsonValueKind.Object) throw new OnnxViTQException($"{at}: the top level must be an object");
        var known = new[] { "name", "description", "extends", "passes", "remove", "add", "quantizers", "overrides" };
        foreach (var p in root.EnumerateObject())
            if (!known.Contains(p.Name)) throw new OnnxViTQException($"{at}: unknown key '{p.Name}'; keys: {string.Join(", ", known)}");

        Recipe? parent = root.TryGetProperty("extends", out var ext) ? Recipes.Get(String(ext, $"{at}: 'extends'")) : null;
        string name = root.TryGetProperty("name", out var n) ? String(n, $"{at}: 'name'") : Path.GetFileNameWithoutExtension(path);
        string description = root.TryGetProperty("description", out var d) ? String(d, $"{at}: 'description'")
            : parent is null ? $"recipe file {Path.GetFileName(path)}" : $"{parent.Name} as changed by {Path.GetFileName(path)}";

        IReadOnlyList<PassStep> passes;
        if (root.TryGetProperty("passes", out var ps)) passes = Passes(ps, at);
        else passes = parent?.Passes ?? throw new OnnxViTQException($"{at}: give 'passes' or 'extends'");

        if (root.TryGetProperty("add", out var adds)) passes = Insert(passes, adds, at);

        var table = parent?.Quantizers ?? new QuantizerTable();
        if (root.TryGetProperty("quantizers", out var qs))
        {
            if (qs.ValueKind != JsonValueKind.Object) throw new OnnxViTQException($"{at}: 'quantizers' must be an object keyed by role");
            var roles = new Dictionary<TensorRole, QuantizerChoice>(table.Roles);
            foreach (var p in qs.EnumerateObject())
            {
                var choice = Choice(p.Value, $"{at}: quantizers.{p.Name}");
                if (p.Name == "weight") table = table with { Weight = choice };
                else if (p.Name == "default") table = table with { Default = choice };
                else if (TensorRoles.TryParse(p.Name, out var role)) roles[role] = choice;
                else throw new OnnxViTQException($"{at}: quantizers.{p.Name}: unknown role; roles: default, {string.Join(", ", TensorRoles.All.Select(r => r.Name()))}");
            }
            table = table with { Roles = roles };
        }
        if (root.TryGetProperty("overrides", out var os))
        {
            if (os.ValueKind != JsonValueKind.Object) throw new OnnxViTQException($"{at}: 'overrides' must be an object keyed by tensor or node name");
            var overrides = new Dictionary<string, QuantizerChoice>(table.Overrides);
            foreach (var p in os.EnumerateObject()) overrides[p.Name] = Choice(p.Value, $"{at}: overrides.{p.Name}");
            table = table with { Overrides = overrides };
        }
        var removed = parent?.Removed ?? [];
        if (root.TryGetProperty("remove", out var rm))
        {
            if (rm.ValueKind != JsonValueKind.Array) throw new OnnxViTQException($"{at}: 'remove' must be an array of pass names");
            removed = [.. removed, .. rm.EnumerateArray().Select((e, i) => String(e, $"{at}: remove[{i}]"))];
        }
        var recipe = new Recipe(name, description, passes, table) { Removed = removed };
        foreach (var step in passes) PassRegistry.Checked(step, name);
        foreach (var pass in removed) PassRegistry.Get(pass);
        // Kinds, options and bit ranges are checked now, for the bit widths a choice fixes itself;
        // the rest is checked again with the run's --bits before anything runs.
        foreach (var role in TensorRoles.All)
        {
            var c = table.For(role);
            QuantizerRegistry.Spec(c.Kind, c.Bits ?? QuantizerRegistry.Get(c.Kind).MaxBits, role, c.OptionValues, $"{at}: quantizers.{RoleKey(role, table)}");
        }
        foreach (var (key, c) in table.Overrides)
        {
            if (c.IsFloat)
            {
                if (c.Bits is not null || c.OptionValues.Count > 0) throw new OnnxViTQException($"{at}: overrides.{key}: kind 'float' takes no bits or options");
                continue;
            }
            var kind = QuantizerRegistry.Get(c.Kind);
            QuantizerRegistry.Spec(c.Kind, c.Bits ?? kind.MaxBits, kind.Target == QuantizerTarget.Weights ? TensorRole.Weight : TensorRole.Other, c.OptionValues, $"{at}: overrides.{key}");
        }
        return recipe;
    }

    private static string RoleKey(TensorRole role, QuantizerTable t) =>
        role == TensorRole.Weight ? "weight" : t.Roles.ContainsKey(role) || role == TensorRole.Input ? role.Name() : "default";

    /// <summary>The pass list with each of <paramref name="adds"/> placed after (or before) the pass it names.</summary>
    private static IReadOnlyList<PassStep> Insert(IReadOnlyList<PassStep> passes, JsonElement adds, string at)
    {
        if (adds.ValueKind != JsonValueKind.Array) throw new OnnxViTQException($"{at}: 'add' must be an array of {{\"name\": ..., \"after\" or \"before\": <pass>, options}} objects");
        var list = passes.ToList();
        int i = 0;
        foreach (var item in adds.EnumerateArray())
        {
            string where = $"{at}: add[{i++}]";
            if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("name", out var name))
                throw new OnnxViTQException($"{where}: expected {{\"name\": ..., \"after\" or \"before\": <pass>, options}}");
            bool after = item.TryGetProperty("after", out var anchor);
            if (!after && !item.TryGetProperty("before", out anchor)) throw new OnnxViTQException($"{where}: say where: \"after\" or \"before\" a pass of the list");
            if (item.TryGetProperty("after", out _) && item.TryGetProperty("before", out _)) throw new OnnxViTQException($"{where}: give \"after\" or \"before\", not both");
            string target = String(anchor, $"{where}.{(after ? "after" : "before")}");
            int at2 = list.FindIndex(p => p.Name == target);
            if (at2 < 0) throw new OnnxViTQException($"{where}: no pass '{target}' in the list ({string.Join(", ", list.Select(p => p.Name))})");
            var options = item.EnumerateObject().Where(p => p.Name is not ("name" or "after" or "before")).ToDictionary(p => p.Name, p => Scalar(p.Value, $"{where}.{p.Name}"));
            list.Insert(after ? at2 + 1 : at2, new PassStep(String(name, $"{where}.name"), options));
        }
        return list;
    }

    private static IReadOnlyList<PassStep> Passes(JsonElement e, string at)
    {
        if (e.ValueKind != JsonValueKind.Array) throw new OnnxViTQException($"{at}: 'passes' must be an array of pass names or {{\"name\": ..., options}} objects");
        var steps = new List<PassStep>();
        int i = 0;
        foreach (var item in e.EnumerateArray())
        {
            string where = $"{at}: passes[{i++}]";
            if (item.ValueKind == JsonValueKind.String) steps.Add(new PassStep(item.GetString()!));
            else if (item.ValueKind == JsonValueKind.Object)
            {
                if (!item.TryGetProperty("name", out var name)) throw new OnnxViTQException($"{where}: a pass object needs a 'name'");
                var options = item.EnumerateObject().Where(p => p.Name != "name").ToDictionary(p => p.Name, p => Scalar(p.Value, $"{where}.{p.Name}"));
                steps.Add(new PassStep(String(name, $"{where}.name"), options));
            }
            else throw new OnnxViTQException($"{where}: expected a pass name or object");
        }
        return steps;
    }

    private static QuantizerChoice Choice(JsonElement e, string at)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new OnnxViTQException($"{at}: expected {{\"kind\": ..., \"bits\": ..., \"options\": {{...}}}}");
        foreach (var p in e.EnumerateObject())
            if (p.Name is not ("kind" or "bits" or "options")) throw new OnnxViTQException($"{at}: unknown key '{p.Name}' (kind, bits, options)");
        if (!e.TryGetProperty("kind", out var kind)) throw new OnnxViTQException($"{at}: 'kind' is required; kinds: {string.Join(", ", QuantizerRegistry.All.Select(k => k.Name))}");
        int? bits = null;
        if (e.TryGetProperty("bits", out var b))
        {
            if (b.ValueKind != JsonValueKind.Number || !b.TryGetInt32(out int v)) throw new OnnxViTQException($"{at}.bits: expected an integer");
            bits = v;
        }
        var options = new Dictionary<string, string>();
        if (e.TryGetProperty("options", out var o))
        {
            if (o.ValueKind != JsonValueKind.Object) throw new OnnxViTQException($"{at}.options: expected an object");
            foreach (var p in o.EnumerateObject()) options[p.Name] = Scalar(p.Value, $"{at}.options.{p.Name}");
        }
        return new QuantizerChoice(String(kind, $"{at}.kind"), bits, options);
    }

    private static string String(JsonElement e, string at) =>
        e.ValueKind == JsonValueKind.String ? e.GetString()! : throw new OnnxViTQException($"{at}: expected a string");

    private static string Scalar(JsonElement e, string at) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString()!,
        JsonValueKind.Number => e.GetRawText(),
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        _ => throw new OnnxViTQException($"{at}: expected a string, number or boolean"),
    };
}
