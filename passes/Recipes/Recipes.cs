using OnnxViTQ.Quantization;

namespace OnnxViTQ;

/// <summary>
/// The built-in recipes. Each is the standard pipeline — canonicalize, select sites, tag roles,
/// assign quantizers, calibrate, [reparameterize], fit, [refine], measure, emit, clean up — with
/// its method's quantizer per role. Ablations are the same recipes with one role's quantizer
/// replaced (a recipe file with <c>"extends"</c>).
/// </summary>
internal static class Recipes
{
    private static readonly IReadOnlyDictionary<string, string> Mse = new Dictionary<string, string> { ["range"] = "mse" };
    private static readonly IReadOnlyDictionary<string, string> Percentile = new Dictionary<string, string> { ["range"] = "percentile" };

    /// <summary>The standard pass list with <paramref name="reparameterize"/> after calibration
    /// and <paramref name="refine"/> after fitting.</summary>
    public static IReadOnlyList<PassStep> Pipeline(IEnumerable<PassStep>? reparameterize = null, IEnumerable<PassStep>? refine = null) =>
    [
        new("canonicalize"),        // opsets 13–17; weights become constants (exports without constant folding)
        new("equalize-convs"),      // CNN parts: exact channel rescaling of conv pairs (none in a plain ViT)
        new("select-sites"),        // what to quantize; needs canonical weights
        new("tag-roles"),           // post-LN / post-GELU / post-Softmax / Q / K / V / attention-output
        new("assign-quantizers"),   // a spec per site from its role; overrides checked before calibration
        new("collect-statistics"),  // runs ONNX Runtime once; observers come from the specs
        .. reparameterize ?? [],    // exact FP32 rewrites that need statistics and change the weights
        new("fit-quantizers"),      // parameters for every site not set by a reparameterization
        .. refine ?? [],            // searches over fitted parameters
        new("correct-conv-bias"),   // CNN parts: the weights' mean output shift out of the biases
        new("warn-outlier-channels"), // post-LN outlier channels a per-tensor grid will lose: say so
        new("measure-error"),       // per-site SQNR for the report
        new("emit-portable"),       // reads the plan, rewrites the graph
        new("remove-unused-constants"), // float weights now unused
    ];

    public static IReadOnlyList<Recipe> All { get; } =
    [
        new("minmax", "weights symmetric per output channel; activations asymmetric per tensor over the calibration min/max",
            Pipeline(), new QuantizerTable()),
        new("percentile", "as minmax, but activation ranges clipped at a percentile of the calibration histogram (--percentile, default 99.99)",
            Pipeline(), new QuantizerTable { Default = new("uniform", Options: Percentile) }),
        new("ptq4vit", "PTQ4ViT: twin-uniform post-Softmax and post-GELU; linear inputs' steps searched on a 100-point grid for the layer output's error",
            Pipeline(refine: [new("optimize-activation-steps", new Dictionary<string, string> { ["lower"] = "0.012", ["upper"] = "1.2", ["points"] = "100" })]), new QuantizerTable
            {
                Weight = new("uniform", Options: Mse),
                Default = new("uniform", Options: Mse),
                Roles = new Dictionary<TensorRole, QuantizerChoice>
                {
                    [TensorRole.PostSoftmax] = new("twin-uniform", Options: new Dictionary<string, string> { ["mode"] = "softmax" }),
                    [TensorRole.PostGelu] = new("twin-uniform", Options: new Dictionary<string, string> { ["mode"] = "signed", ["range"] = "mse" }),
                },
            }),
        new("liu2021", "Liu et al. 2021: each activation role starts from its percentile or its observed range, whichever the whole model measures closer to FP32, then each linear layer's weight and activation steps searched for the output's Pearson similarity (Q·Kᵀ with the ranking loss: search-intervals option products=scores), and biases corrected by the mean output error where that brings the model closer to FP32",
            Pipeline(refine: [new("choose-ranges"), new("search-intervals"), new("correct-bias")]), new QuantizerTable { Default = new("uniform", Options: Percentile) }),
        new("repq", "RepQ-ViT: per-channel post-LayerNorm quantization folded into the LayerNorm and next linears (per-tensor at deployment), log√2 post-Softmax",
            Pipeline(reparameterize: [new("fold-layernorm", new Dictionary<string, string> { ["policy"] = "repq" })]), new QuantizerTable
            {
                Weight = new("uniform", Options: Mse),
                Roles = new Dictionary<TensorRole, QuantizerChoice>
                {
                    [TensorRole.PostSoftmax] = new("log-sqrt2", Options: Mse),
                },
            }),
        new("dopq", "DopQ-ViT: LayerNorm reparameterization with the MAD-guided scaling factor (MOSF), tangent quantizer (TanQ) post-Softmax",
            Pipeline(reparameterize: [new("fold-layernorm", new Dictionary<string, string> { ["policy"] = "mosf" })]), new QuantizerTable
            {
                Weight = new("uniform", Options: Mse),
                Roles = new Dictionary<TensorRole, QuantizerChoice>
                {
                    [TensorRole.PostSoftmax] = new("tan"),
                },
            }),
        new("aocq", "AOCQ without reconstruction: channel-balancing LayerNorm reparameterization, then activation steps chosen for each layer's output",
            Pipeline(reparameterize: [new("fold-layernorm", new Dictionary<string, string> { ["policy"] = "balance" })],
                     refine: [new("optimize-activation-steps")]), new QuantizerTable
            {
                Weight = new("uniform", Options: Mse),
                Default = new("uniform", Options: Mse),
            }),
        new("adfq", "ADFQ-ViT without reconstruction: per-token outlier-aware post-LayerNorm (POQ), shift-log2 post-GELU (SLQ), log2 post-Softmax",
            Pipeline(), new QuantizerTable
            {
                Weight = new("uniform", Options: Mse),
                Roles = new Dictionary<TensorRole, QuantizerChoice>
                {
                    [TensorRole.PostLayerNorm] = new("outlier-split"),
                    [TensorRole.PostGelu] = new("shift-log2"),
                    [TensorRole.PostSoftmax] = new("log2"),
                },
            }),
    ];

    public static IReadOnlyList<string> Names => All.Select(r => r.Name).ToList();

    /// <summary>A built-in recipe by name, or a recipe file when <paramref name="nameOrPath"/>
    /// ends in .json.</summary>
    public static Recipe Get(string nameOrPath)
    {
        if (nameOrPath.EndsWith(".json", StringComparison.OrdinalIgnoreCase)) return RecipeFile.Load(nameOrPath);
        return All.FirstOrDefault(r => r.Name.Equals(nameOrPath, StringComparison.OrdinalIgnoreCase))
               ?? throw new OnnxViTQException($"unknown recipe '{nameOrPath}'; available: {string.Join(", ", Names)}, auto (or a recipe file ending in .json)");
    }
}
