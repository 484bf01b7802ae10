using OnnxViTQ.Quantization;
using System.Globalization;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Analysis;

namespace OnnxViTQ.Passes.Reparameterize;

/// <summary>What <see cref="InjectOutlierChannels"/> did to one LayerNorm.</summary>
internal sealed record InjectedOutliers(string LayerNorm, IReadOnlyList<int> Channels, IReadOnlyList<float> Factors);

/// <summary>
/// Makes the function-preserving outlier variant of a model, to test quantizers on the huge
/// post-LayerNorm outlier channels ImageNet ViTs have and small models lack: in every LayerNorm
/// whose output feeds only linear layers, a few channels c (<see cref="Fraction"/> of them, at
/// least one) get γ_c and β_c multiplied by a factor f_c (log-uniform in [min, max]) and the
/// matching input rows of every weight reading the LayerNorm divided by f_c — the
/// <see cref="ChannelAffineFold"/> with r = 1/f, δ = 0, so the FP32 function is unchanged while
/// the post-LN activations carry channels f_c times larger. Deterministic for a seed.
/// </summary>
internal sealed class InjectOutlierChannels(double fraction, float minFactor, float maxFactor, int seed, string modelName) : IPass
{
    public const string MetadataKey = "onnxvitq.outliers";

    public double Fraction { get; } = fraction is > 0 and < 1 ? fraction : throw new OnnxViTQException($"channel fraction {fraction} must be in (0, 1)");
    public float MinFactor { get; } = minFactor > 1 ? minFactor : throw new OnnxViTQException($"--min-factor {minFactor} must be above 1");
    public float MaxFactor { get; } = maxFactor >= minFactor ? maxFactor : throw new OnnxViTQException($"--max-factor {maxFactor} must be at least --min-factor {minFactor}");

    public string Name => "inject-outlier-channels";

    /// <summary>It changes weights: an FP32 model rewrite, before anything is planned on it.</summary>
    public PassContract Contract { get; } = new([], [], [Stages.SitesSelected]);

    public PassResult Run(Model model, PassContext context)
    {
        var rng = new Random(seed);
        var injected = new List<InjectedOutliers>();
        foreach (var group in LayerNormGroups.Find(model, modelName))
        {
            if (!group.Foldable)
            {
                context.Info($"LayerNorm '{group.Name}' left as is: {group.Refusal}");
                continue;
            }
            int count = Math.Max(1, (int)Math.Round(group.Channels * Fraction));
            var channels = Enumerable.Range(0, group.Channels).OrderBy(_ => rng.Next()).Take(count).Order().ToList();
            var scale = Enumerable.Repeat(1f, group.Channels).ToArray();
            var factors = new List<float>();
            foreach (int c in channels)
            {
                float f = MinFactor * MathF.Pow(MaxFactor / MinFactor, (float)rng.NextDouble());
                factors.Add(f);
                scale[c] = 1 / f;
            }
            ChannelAffineFold.Apply(model, group, scale, new float[group.Channels]);
            injected.Add(new InjectedOutliers(group.Name, channels, factors));
            context.Info($"LayerNorm '{group.Name}': channels {string.Join(", ", channels.Zip(factors, (c, f) => string.Create(CultureInfo.InvariantCulture, $"{c} ×{f:0.#}")))}");
        }
        if (injected.Count == 0) throw new OnnxViTQException($"'{modelName}' has no LayerNorm whose output feeds only linear layers; no outliers can be injected");
        model.SetMetadata(MetadataKey, string.Create(CultureInfo.InvariantCulture,
            $"fraction={Fraction};factors={MinFactor}-{MaxFactor};seed={seed};layernorms={injected.Count}"));
        context.Set<IReadOnlyList<InjectedOutliers>>(injected);
        return PassResult.Changed;
    }
}
