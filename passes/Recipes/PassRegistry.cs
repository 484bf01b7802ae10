using System.Globalization;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes;
using OnnxViTQ.Passes.Canonicalize;
using OnnxViTQ.Passes.Lowering;
using OnnxViTQ.Passes.Reparameterize;
using OnnxViTQ.Patterns;

namespace OnnxViTQ;

/// <summary>A pass a recipe can name: its options and how to build it.</summary>
internal sealed record PassFactory(string Name, string Description, IReadOnlyList<string> Options, Func<RecipeInputs, PassStep, IPass> Create)
{
    /// <summary>Passes that fill the same place (the format lowerings): an extension is not added
    /// where a pass of its family already is.</summary>
    public string Family { get; init; } = Name;

    /// <summary>Passes that come with this one wherever it is (added at their points unless the
    /// recipe names or removes them).</summary>
    public IReadOnlyList<PassExtension> Companions { get; init; } = [];
}

/// <summary>Every pass recipes (built-in and files) can use, by name.</summary>
internal static class PassRegistry
{
    public static IReadOnlyList<PassFactory> All { get; } =
    [
        new("canonicalize", "convert opsets 7–12 up to 13 and 18–21 down to 17 (version adapters; a node none converts is refused before calibration), then fold Transpose/Identity of constants and Constant-node weights so weights are constants", [],
            (r, _) => CanonicalizationRules.Pass(r.ModelName)),
        new("select-sites", "one quantization site per tensor read by a MatMul, Gemm or Conv", [],
            (_, _) => new SelectQuantizationSites()),
        new("tag-roles", "recognise post-LayerNorm, post-GELU, post-Softmax, query, key, value and attention-output tensors", [],
            (_, _) => new TagViTRoles()),
        new("assign-quantizers", "give every site the recipe's quantizer for its role (and per-site overrides); what --exclude or a float override names leaves the plan", [],
            (r, _) => new AssignQuantizers(r.Recipe.Quantizers, r.Options.Bits, r.Recipe.Name, new Quantization.Exclusions(r.Options.Exclude))),
        new("collect-statistics", "run the calibration data through ONNX Runtime into each site's observers", [],
            (r, _) => new CollectActivationStatistics(r.Calibration, r.Options.BatchSize, r.Options.CalibrationSamples, r.ModelName,
                captureProducts: r.Recipe.Passes.Any(p => p.Name == "search-intervals" && p.OptionValues.GetValueOrDefault("products", "none") != "none"))),
        new("fold-layernorm", "reparameterize post-LayerNorm activations into the LayerNorm affine and the next linears (policy: repq, mosf, balance)", ["policy", "kappa"],
            (r, step) => new FoldLayerNormScales(PassRegistry.Choice(step, "policy", "repq", "mosf", "balance") switch
            {
                "mosf" => new MosfPolicy(PassRegistry.Number(step, "kappa", 3, 0, 100)),
                "balance" => new BalancePolicy(),
                _ => new RepQPolicy(),
            }, r.ModelName)),
        new("equalize-convs", "cross-layer equalization of convolution pairs joined by ReLU/LeakyReLU or nothing (an exact rescaling of output/input channels; CNN parts of hybrids)", [],
            (_, _) => new Passes.Reparameterize.EqualizeConvPairs()),
        new("correct-conv-bias", "subtract each CNN convolution's mean output shift from its weights' quantization (Σ (Ŵ − W)·E[x] per output channel) from its bias", [],
            (_, _) => new Passes.CorrectConvBias()),
        new("warn-outlier-channels", "warn when post-LayerNorm activations quantized per tensor, without a LayerNorm fold, have a median channel spanning fewer than 4 steps (outlier channels that will make the recipe collapse)", [],
            (_, _) => new Passes.WarnOnOutlierChannels()),
        new("fit-quantizers", "fit every site's quantizer parameters", [],
            (_, _) => new FitQuantizers()),
        new("optimize-activation-steps", "re-choose uniform activation steps of linear inputs for the least layer-output error (AOCQ, PTQ4ViT)", ["lower", "upper", "points"],
            (_, step) => new OptimizeActivationSteps((float)Number(step, "lower", 0.5, 1e-4, 10), (float)Number(step, "upper", 1.2, 1e-4, 10), (int)Number(step, "points", 15, 2, 1000))),
        new("mixed-precision", "Liu et al. 2021: one width per attention/MLP module in [min, max], least summed sensitivity under an average of avg bits; a module's sensitivity at a width is measured by ONNX Runtime on the first samples calibration samples (default 32) with that module alone quantized (score: kl = the model's mean KL to FP32, the default; nuclear = nuclear norm of the module's output × its squared error, Liu et al.'s form)",
            ["min", "max", "avg", "samples", "score"],
            (inputs, step) => new Passes.Search.AllocateModuleBits((int)Number(step, "min", 4, 2, 8), (int)Number(step, "max", 8, 2, 8), Number(step, "avg", 6, 2, 8),
                new PlanCheck(inputs.Calibration, inputs.Options.BatchSize, Math.Min((int)Number(step, "samples", 32, 1, 4096), inputs.Options.CalibrationSamples), inputs.ModelName),
                Choice(step, "score", "kl", "nuclear") switch { "nuclear" => Passes.Search.ModuleScore.NuclearOutputError, _ => Passes.Search.ModuleScore.ModelKl })),
        new("choose-ranges", "per activation role, start from the percentile range or the observed min/max, whichever brings the whole quantized model closer to FP32 (mean KL) on up to 512 calibration samples; uniform range=percentile sites only", [],
            (inputs, _) => new Passes.Search.ChooseActivationRanges(
                new PlanCheck(inputs.Calibration, inputs.Options.BatchSize, Math.Min(512, inputs.Options.CalibrationSamples), inputs.ModelName), inputs.Options.MeasureLayerOutputs)),
        new("search-intervals", "Liu et al. 2021: per linear layer and attention product, alternately search the two inputs' steps in [alpha, beta]·Δ₀ for the highest output Pearson similarity (products: none = linear layers only, the default; scores = also Q·Kᵀ, on its attention maps with − gamma·ranking loss; all = also softmax·V)",
            ["rounds", "candidates", "alpha", "beta", "gamma", "products"],
            (inputs, step) => new Passes.Search.SearchIntervals((int)Number(step, "rounds", 20, 1, 100), (int)Number(step, "candidates", 20, 2, 1000),
                (float)Number(step, "alpha", 0.5, 1e-3, 10), (float)Number(step, "beta", 1.2, 1e-3, 10), inputs.Options.MeasureLayerOutputs,
                Number(step, "gamma", 1, 0, 1000), Choice(step, "products", "none", "scores", "all") switch
                {
                    "all" => Passes.Search.ProductSearch.All,
                    "scores" => Passes.Search.ProductSearch.AttentionScores,
                    _ => Passes.Search.ProductSearch.None,
                })),
        new("correct-bias", "Liu et al. 2021: subtract each linear layer's mean output error (per channel, over every calibration row: one more ONNX Runtime pass) from its bias; check: true keeps the corrections only if they bring the model's outputs significantly closer to FP32 (mean KL) on up to 512 calibration samples without changing more of their top-1 classes", ["check"],
            (inputs, step) => new Passes.Search.CorrectBias(
                new Passes.Search.CalibrationRun(inputs.Calibration, inputs.Options.BatchSize, inputs.Options.CalibrationSamples, inputs.ModelName),
                inputs.Options.MeasureLayerOutputs,
                Choice(step, "check", "true", "false") == "true"
                    ? new PlanCheck(inputs.Calibration, inputs.Options.BatchSize, Math.Min(512, inputs.Options.CalibrationSamples), inputs.ModelName)
                    : null)),
        new("reconstruct", "module-wise weight reconstruction: each attention and MLP module's weight rounding chosen by AdaRound (rectified sigmoid, β-annealed regularizer, Adam; the module's ONNX graph and its gradient run by ONNX Runtime) so its output matches the FP32 module's on the first samples calibration samples (default 256); iterations per module (default 1000), batch samples per step (32), lr (3e-3), lambda (0.01), seed (0). Weights only for now: activations keep their fitted steps (uniform per-tensor ones are simulated while a module is optimized). After fit-quantizers",
            ["iterations", "samples", "batch", "lr", "lambda", "seed"],
            (inputs, step) => new Reconstruction.Reconstruct(inputs.Calibration, inputs.Options.BatchSize,
                Math.Min((int)Number(step, "samples", 256, 1, 65536), inputs.Options.CalibrationSamples), inputs.ModelName,
                new Reconstruction.AdaRound.Settings
                {
                    Iterations = (int)Number(step, "iterations", 1000, 1, 1_000_000),
                    BatchSamples = (int)Number(step, "batch", 32, 1, 4096),
                    LearningRate = (float)Number(step, "lr", 3e-3, 1e-7, 1),
                    Lambda = (float)Number(step, "lambda", 0.01, 0, 1000),
                    Seed = (int)Number(step, "seed", 0, 0, int.MaxValue),
                })),
        new("measure-error", "SQNR and cosine of every quantizer on calibration data, and of linear-layer outputs when a report asks (for the report)", [],
            (inputs, _) => new MeasureQuantizationError(inputs.Options.MeasureLayerOutputs)),
        new("lower-native", "linear layers as com.onnxvitq.QuantizedLinear (runtime-ops: VNNI integer GEMM, packed int8/int4 weights)", [],
            (_, _) => LowerLinearLayers.Pass(new NativeLinearLowering()))
        {
            Family = "lowering",
            Companions =
            [
                new(new PassStep("fuse-native-attention"), PassExtensions.After("lower-native"), ""),
                new(new PassStep("lower-native-products", new Dictionary<string, string> { ["left"] = "log2" }), PassExtensions.After("lower-native"), ""),
                new(new PassStep("fuse-native-layernorm"), PassExtensions.AfterEmission, ""),
            ],
        },
        new("lower-native-products", "attention products (Q·Kᵀ, softmax·V) as com.onnxvitq.QuantizedMatMul (runtime-ops: both operands quantized in the op, exact integer products): right operand uniform per-tensor, left uniform per-tensor or log2 (as int16 powers of two). left = any (default) | log2. Comes with lower-native as left=log2 (the portable log2 quantizer is unfused float ops); uniform × uniform products are fused into QuantizedAttention where the attention has nn.MultiheadAttention's form (fuse-native-attention, which runs first); for the others name the pass with left=any after lower-native (speed: BENCHMARKS.md, attention products)", ["left"],
            (_, step) => LowerActivationProducts.Pass(Choice(step, "left", "any", "log2") == "log2")),
        new("fuse-native-attention", "comes with lower-native: each multi-head self-attention in nn.MultiheadAttention's exported form (q|k|v slices, Q·Kᵀ, Softmax, softmax·V) with uniform per-tensor Q, K, probabilities and V becomes one com.onnxvitq.QuantizedAttention (operands quantized in the op, exact integer products, no head transposes)", [],
            (_, _) => FuseNativeAttention.Pass()),
        new("fuse-native-gelu", "after emit-portable: a com.onnxvitq.QuantizedLinear read only by an exact (erf) GELU computes the GELU in its epilogue. Opt-in: name it after emit-portable (speed: BENCHMARKS.md, fusions)", [],
            (_, _) => FuseNativeGelu.Pass()),
        new("fuse-native-layernorm", "comes with lower-native, after emit-portable: a LayerNormalization read only by a com.onnxvitq.QuantizedLinear (static or per-token input) is computed by that op on each row before quantizing", [],
            (_, _) => FuseNativeLayerNorm.Pass()),
        new("lower-ort", "linear layers in the form a stock ONNX Runtime runs fastest here, measured per layer shape (kernel: auto = fastest of the forms that compute the plan exactly: QDQ and MatMulIntegerToFloat on integer activation codes, float weights on other activations; any = also MatMulNBits and DynamicQuantizeMatMul, which re-quantize activations; qdq, integer, float, nbits, dynamic force one)", ["kernel"],
            (_, step) => Choice(step, "kernel", "auto", "any", "qdq", "integer", "float", "nbits", "dynamic") switch
            {
                "any" => LowerLinearLayers.Pass(new OrtLinearLowering(anyForm: true)),
                "qdq" => LowerLinearLayers.Pass(new OrtLinearLowering(OrtContribKernel.Qdq)),
                "integer" => LowerLinearLayers.Pass(new OrtLinearLowering(OrtContribKernel.MatMulIntegerToFloat)),
                "float" => LowerLinearLayers.Pass(new OrtLinearLowering(OrtContribKernel.FloatWeights)),
                "nbits" => LowerLinearLayers.Pass(new OrtLinearLowering(OrtContribKernel.MatMulNBits)),
                "dynamic" => LowerLinearLayers.Pass(new OrtLinearLowering(OrtContribKernel.DynamicQuantizeMatMul)),
                _ => LowerLinearLayers.Pass(new OrtLinearLowering()),
            })
        {
            Family = "lowering",
            Companions = [new(new PassStep("store-weights-unsigned"), PassExtensions.AfterEmission, "")],
        },
        new("store-weights-unsigned", "comes with lower-ort, after emit-portable: int8 weights that meet uint8 activations in ONNX Runtime's integer kernels stored as uint8 + 128, so a CPU whose u8×s8 kernels saturate (x86 without VNNI) runs them exactly (when: saturating = only on such a CPU, the default; always; never)", ["when"],
            (_, step) => new StoreWeightsUnsigned(Choice(step, "when", "saturating", "always", "never") switch
            {
                "always" => UnsignedWeightsPolicy.Always,
                "never" => UnsignedWeightsPolicy.Never,
                _ => UnsignedWeightsPolicy.WhenSaturating,
            })),
        new("emit-portable", "write the quantizers as standard ONNX (QDQ and fake-quant subgraphs)", [],
            (_, _) => new EmitPortable()),
        new("remove-unused-constants", "drop initializers and Constant nodes nothing reads", [],
            (_, _) => new RemoveUnusedConstants()),
    ];

    public static PassFactory Get(string name) =>
        All.FirstOrDefault(p => p.Name == name)
        ?? throw new OnnxViTQException($"unknown pass '{name}'; passes: {string.Join(", ", All.Select(p => p.Name))}");

    public static IPass Create(PassStep step, RecipeInputs inputs, string recipe) => Checked(step, recipe).Create(inputs, step);

    /// <summary>The step's pass, its option names checked (values are checked when it is built).</summary>
    public static PassFactory Checked(PassStep step, string recipe)
    {
        var factory = Get(step.Name);
        foreach (var key in step.OptionValues.Keys)
            if (!factory.Options.Contains(key))
                throw new OnnxViTQException($"recipe '{recipe}': pass '{step.Name}' has no option '{key}'" +
                                            (factory.Options.Count == 0 ? " (it takes none)" : $"; options: {string.Join(", ", factory.Options)}"));
        return factory;
    }

    /// <summary>A numeric pass option, with the recipe and pass named in errors.</summary>
    public static double Number(PassStep step, string option, double fallback, double min, double max)
    {
        if (!step.OptionValues.TryGetValue(option, out var text)) return fallback;
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || v < min || v > max)
            throw new OnnxViTQException($"pass '{step.Name}': option '{option}' = '{text}' must be a number in [{min}, {max}]");
        return v;
    }

    public static string Choice(PassStep step, string option, params string[] choices)
    {
        if (!step.OptionValues.TryGetValue(option, out var text)) return choices[0];
        return choices.Contains(text) ? text : throw new OnnxViTQException($"pass '{step.Name}': option '{option}' = '{text}' must be one of {string.Join(", ", choices)}");
    }
}
