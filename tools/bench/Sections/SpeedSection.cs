using System.Text;
using OnnxViTQ;
using OnnxViTQ.Data;
using OnnxViTQ.Passes.Lowering;
using OnnxViTQ.Runtime;
using OnnxViTQ.Serialization;

/// <summary>
/// "Runtime speed: native ops against ONNX Runtime" (marked, one section per native kernel path, i.e.
/// per kind of CPU: a run on another kind of machine adds or refreshes its own and keeps the others):
/// the instruction peak, per-GEMM throughput, the attention products, the fusions and end-to-end
/// latency of FP32 against every quantized form of the same plan.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only speed --deit-tiny &lt;model.onnx&gt; --deit-tiny-calib &lt;images.npy&gt;</c>;
/// <c>--only gemm</c> prints the peak and the per-GEMM table alone.
/// </summary>
internal static class SpeedSection
{
    public static string KernelPath => NativeOps.IsAvailable ? NativeOps.KernelPath : "none";
    /// <summary>One section per kernel path and CPU maker: ratios differ between an AMD and an Intel
    /// core of the same ISA, and a run on one keeps the other's figures.</summary>
    public static string Marker => $"speed-{KernelPath}-{CpuMaker}";

    public static string CpuMaker => MachineInfo.CpuName() switch
    {
        var n when n.Contains("AMD", StringComparison.OrdinalIgnoreCase) => "amd",
        var n when n.Contains("Intel", StringComparison.OrdinalIgnoreCase) => "intel",
        _ => "other",
    };

    /// <summary>The peak and the per-GEMM table, printed, not written (they are part of the speed
    /// section, which is regenerated whole).</summary>
    public static void PrintGemm(Bench b)
    {
        var r = new StringBuilder();
        double allCores = KernelPath == "avx512vnni" ? Speed.VnniPeak().AllCores : 0;
        r.AppendLine($"2-core VNNI peak {allCores:0} GOPS");
        AppendGemmTable(r, allCores, int.Parse(b.Arg("--rounds", "30")));
        Console.WriteLine(r);
    }

    public static StringBuilder Write(Bench b)
    {
        string kernelPath = KernelPath;

        var r = new StringBuilder();
        int rounds = int.Parse(b.Arg("--rounds", "30"));
        bool vnni = kernelPath == "avx512vnni";
        r.AppendLine($"## Runtime speed: native ops against ONNX Runtime ({(vnni ? "AVX-512 VNNI CPU" : $"CPU without VNNI, native path `{kernelPath}`")})");
        r.AppendLine();
        r.AppendLine($"Regenerate: `dotnet run --project tools/bench -c Release -- --only speed{(b.DeitTiny is null ? "" : " --deit-tiny <model.onnx> --deit-tiny-calib <images.npy>")}` " +
                     $"({DateTime.UtcNow:yyyy-MM-dd}, {b.Runtime}, {MachineInfo.CpuName()}, native kernel path `{kernelPath}`). All latencies: {Speed.Threads} intra-op threads (one pool shared by all sessions, idle threads spinning), ORT_ENABLE_ALL, the candidates of one table");
        r.AppendLine($"run interleaved round by round ({rounds} rounds after 3 warm-up rounds), median per candidate; ratios are against FP32 in the same run.");
        if (OrtInt8Kernels.SaturatesU8S8)
            r.AppendLine("On this CPU ONNX Runtime's u8×s8 kernels saturate int16 pair sums, so the portable QDQ model does not compute its plan exactly when run fused (as timed here); the `ort` models store such weights as uint8 (exact u8×u8 kernels).");
        r.AppendLine();
        double allCores = 0;
        if (vnni)
        {
            var (perCore, all) = Speed.VnniPeak();
            allCores = all;
            r.AppendLine($"**int8 VNNI peak** (register-only loop of 20 independent `vpdpbusd zmm` chains; each instruction is 64 u8×s8 multiply-adds = 128 ops;");
            r.AppendLine($"GOPS = 128 × instructions / seconds; best of {Speed.PeakTries} tries of 0.5 s): **{perCore:0} GOPS on one core, {allCores:0} GOPS on {Speed.Threads} cores at once** — the GEMM figures below are against the {Speed.Threads}-core figure.");
        }
        else if (kernelPath == "avx2")
        {
            // No VNNI: the GEMM is read against the instruction it is built on, measured the same way.
            var madd = Speed.Avx2Peak(0);
            var maddubs = Speed.Avx2Peak(1);
            var fma = Speed.Avx2Peak(2);
            allCores = madd.AllCores;
            r.AppendLine($"No VNNI on this CPU: the native kernels run the `{kernelPath}` path (exact 16-bit multiply-adds). **Measured peaks** (register-only assembly loops, 6 independent integer");
            r.AppendLine($"or 10 FMA accumulator chains; GOPS = 2 × multiply-adds per instruction × instructions / seconds; best of {Speed.PeakTries} tries of 0.5 s), one core / both cores at once (one thread each): ");
            r.AppendLine($"`vpmaddwd` + `vpaddd` (16 exact int16 MACs; the native GEMM) **{madd.PerCore:0} / {madd.AllCores:0} GOPS**; `vpmaddubsw` + `vpmaddwd` + `vpaddd` (32 u8×s8 MACs, int16-saturating pair sums; ONNX Runtime's AVX2 u8×s8 kernel) {maddubs.PerCore:0} / {maddubs.AllCores:0} GOPS;");
            r.AppendLine($"FP32 `vfmadd` (8 MACs) {fma.PerCore:0} / {fma.AllCores:0} GFLOPS. \"% of peak\" below is against the 2-core `vpmaddwd` figure. The exact int16 multiply-add's ceiling is");
            r.AppendLine($"{madd.PerCore / fma.PerCore:0.00}× (one core) / {madd.AllCores / fma.AllCores:0.00}× (both) the FP32 FMA's here, the saturating u8×s8 one {maddubs.PerCore / fma.PerCore:0.00}× / {maddubs.AllCores / fma.AllCores:0.00}×" +
                         (madd.AllCores / fma.AllCores < 2 && madd.PerCore / fma.PerCore < 2 ? ": a GEMM-bound model cannot reach 2× FP32 on this CPU whatever the kernel." : ". These shared 2-vCPU machines are noisy: peaks measured minutes apart differed by up to 30 %."));
            Console.WriteLine($"avx2 peaks (1 core / 2 cores): madd {madd.PerCore:0}/{madd.AllCores:0}, maddubs {maddubs.PerCore:0}/{maddubs.AllCores:0}, fma {fma.PerCore:0}/{fma.AllCores:0}");
        }
        else
            r.AppendLine($"No VNNI on this CPU: the native kernels run the `{kernelPath}` path, so there is no VNNI peak to compare against.");
        r.AppendLine();
        AppendGemmTable(r, allCores, rounds);

        r.AppendLine("### Attention products (com.onnxvitq.QuantizedMatMul, both operands quantized per tensor in the op)");
        r.AppendLine();
        r.AppendLine("The DeiT-Tiny shapes per image (3 heads, 197 tokens, head width 64) at batch 1 and 8: S×M×K×N = slices × rows × inner × columns.");
        r.AppendLine("portable QDQ = QuantizeLinear/DequantizeLinear on both operands then MatMul, as ONNX Runtime runs it (ORT_ENABLE_ALL: fused into its u8×u8 kernels); FP32 = MatMul.");
        r.AppendLine($"Native path `{kernelPath}`: {(vnni ? "`vpdpwssd` (the int16 VNNI multiply-add, 32 MACs per instruction, half the u8×s8 `vpdpbusd`'s)" : "`vpmaddwd` + `vpaddd`")} on int16 centred codes, summed exactly in int32.");
        r.AppendLine("`--format native` runs this op only for adfq's log2 softmax·V (lower-native-products with left=log2); the uniform products of the attentions it recognises run inside");
        r.AppendLine("com.onnxvitq.QuantizedAttention (`fuse-native-attention`, its products on the linear layers' u8×s8 GEMM; what it buys is in the end-to-end tables), and other uniform products stay QDQ unless a recipe names `lower-native-products`.");
        r.AppendLine();
        r.AppendLine("| product | S×M×K×N | native ms | portable QDQ ms | FP32 ms | native vs QDQ | native vs FP32 |");
        r.AppendLine("|---|---|---:|---:|---:|---:|---:|");
        var productVsQdq = new List<double>();
        foreach (var (label, sl, m, k, n) in new[] { ("Q·Kᵀ", 3, 197, 64, 197), ("softmax·V", 3, 197, 197, 64), ("Q·Kᵀ", 24, 197, 64, 197), ("softmax·V", 24, 197, 197, 64) })
        {
            var x = Speed.RandomInput((long)sl * m * k, 3);
            var t = Speed.MedianMs([Speed.ProductModel(sl, m, k, n, "native"), Speed.ProductModel(sl, m, k, n, "qdq"), Speed.ProductModel(sl, m, k, n, "float")], "x", x, [sl, m, k], rounds * 5);
            r.AppendLine($"| {label} | {sl}×{m}×{k}×{n} | {t[0]:0.000} | {t[1]:0.000} | {t[2]:0.000} | {t[1] / t[0]:0.00}× | {t[2] / t[0]:0.00}× |");
            productVsQdq.Add(t[1] / t[0]);
            Console.WriteLine($"product {label} {sl}x{m}x{k}x{n}: native {t[0]:0.000} ms, qdq {t[1]:0.000} ms, fp32 {t[2]:0.000} ms");
        }
        r.AppendLine();
        r.AppendLine(productVsQdq.All(v => v > 1)
            ? "Here the op is faster than the fused QDQ product on every shape in this run; it stays opt-in because other runs, on this CPU and the other measured, found it slower on Q·Kᵀ at batch 8 (README)."
            : $"Native against QDQ here: {string.Join(", ", productVsQdq.Select(v => $"{v:0.00}×"))}; not faster on every shape, hence opt-in.");
        r.AppendLine();

        r.AppendLine("### Fusions");
        r.AppendLine();
        r.AppendLine("GELU into fc1 (`fuse-native-gelu`, opt-in: not part of `--format native` since it measured slower than this table's separate form): com.onnxvitq.QuantizedLinear (int8 weights, per-token activations) followed by the");
        r.AppendLine("exporter's erf GELU nodes (ONNX Runtime fuses them into its Gelu op) against the same op computing GELU in its epilogue, on the DeiT-Tiny fc1 shape at batch 1 and 8.");
        r.AppendLine("LayerNorm into the linear that reads it (`fuse-native-layernorm`, part of `--format native`): ONNX Runtime's LayerNormalization then the op, against the");
        r.AppendLine("op normalising each row itself before quantizing it, on the DeiT-Tiny qkv shape. The attention fusion (`fuse-native-attention`) is measured on whole models: the end-to-end tables' \"attention not fused\" rows.");
        r.AppendLine();
        r.AppendLine("| fusion | M×K×N | separate ms | fused ms | fused vs separate |");
        r.AppendLine("|---|---|---:|---:|---:|");
        foreach (var (fusion, m, k, n) in new[] { ("GELU", 197, 192, 768), ("GELU", 1576, 192, 768), ("LayerNorm", 197, 192, 576), ("LayerNorm", 1576, 192, 576) })
        {
            var x = Speed.RandomInput((long)m * k, 1);
            byte[] Form(string f) => fusion == "GELU" ? Speed.GemmModel(m, k, n, 8, gelu: f) : Speed.GemmModel(m, k, n, 8, layerNorm: f);
            var t = Speed.MedianMs([Form("separate"), Form("fused")], "x", x, [m, k], rounds * 5);
            r.AppendLine($"| {fusion} | {m}×{k}×{n} | {t[0]:0.000} | {t[1]:0.000} | {t[0] / t[1]:0.00}× |");
            Console.WriteLine($"{fusion} fusion {m}x{k}x{n}: separate {t[0]:0.000} ms, fused {t[1]:0.000} ms");
        }
        r.AppendLine();

        var speedModels = new List<(string Name, string Path, ICalibrationSource Calib)>();
        if (b.DeitTiny is not null && b.DeitTinyCalib is not null)
        {
            var dm = OnnxModelReader.Load(b.DeitTiny);
            speedModels.Add(("DeiT-Tiny-shaped (224², 197 tokens, dim 192, depth 12)", b.DeitTiny, new NpyTensorSource(b.DeitTinyCalib, ImagePreprocessing.ForModel(dm, 3, 224, 224))));
        }
        foreach (var f in new[] { "vit.opset17.onnx", "deit.opset17.onnx", "swin.opset17.onnx" })
            speedModels.Add((f, b.ModelPath(f), new NpyTensorSource(b.Calib, null)));
        // What fuse-native-attention buys: the same native model with that pass removed, so the
        // attention runs as before it existed: ONNX Runtime's fused QDQ products, Softmax, slices and
        // transposes.
        var minmax = Recipes.Get("minmax");
        var unfusedAttention = minmax with { Removed = ["fuse-native-attention"] };
        var variants = new (string Label, string Recipe, string Bits, OutputFormat Format, Recipe? Custom)[]
        {
            ("portable QDQ, minmax W8A8", "minmax", "W8A8", OutputFormat.Portable, null),
            ("ort, minmax W8A8", "minmax", "W8A8", OutputFormat.Ort, null),
            ("ort, minmax W4A8", "minmax", "W4A8", OutputFormat.Ort, null),
            ("native, minmax W8A8", "minmax", "W8A8", OutputFormat.Native, null),
            ("native, minmax W8A8, attention not fused", "minmax", "W8A8", OutputFormat.Native, unfusedAttention),
            ("native, minmax W4A8", "minmax", "W4A8", OutputFormat.Native, null),
            ("portable, adfq W8A8", "adfq", "W8A8", OutputFormat.Portable, null),
            ("native, adfq W8A8", "adfq", "W8A8", OutputFormat.Native, null),
        };
        r.AppendLine("### End-to-end latency");
        r.AppendLine();
        r.AppendLine("Each quantized model is the file `onnxvitq quantize --recipe R --bits B --format F` writes (64 calibration images); same plan across formats of one recipe.");
        r.AppendLine("`ort`: each linear layer as the faster exact ONNX Runtime form measured on this machine while quantizing (QDQ or com.microsoft.MatMulIntegerToFloat).");
        r.AppendLine("Input: a random image batch. Size: the .onnx file.");
        r.AppendLine();
        var fusedAttentions = new Dictionary<string, int>();
        foreach (var (name, path, source) in speedModels)
        {
            var fp32Bytes = File.ReadAllBytes(path);
            var fp32Model = OnnxModelReader.Load(path);
            var input = ImageInput.Of(fp32Model, path);
            var bytes = new List<byte[]> { fp32Bytes };
            fusedAttentions[name] = 0;
            foreach (var v in variants)
            {
                var m = OnnxModelReader.Load(path);
                var options = new QuantizationOptions { Recipe = v.Recipe, Bits = BitWidths.Parse(v.Bits), CalibrationSamples = 64, BatchSize = 16, Format = v.Format };
                if (v.Custom is { } custom) Quantizer.Quantize(m, path, source, options, custom);
                else Quantizer.Quantize(m, path, source, options);
                bytes.Add(OnnxModelWriter.ToBytes(m));
                if (v.Label == "native, minmax W8A8") fusedAttentions[name] = m.Graph.Nodes.Count(n => n.OpType == FuseNativeAttention.OpType);
            }
            r.AppendLine($"**{name}**");
            r.AppendLine();
            r.AppendLine("| model | batch 1 ms | vs FP32 | batch 8 ms | vs FP32 | file | vs FP32 |");
            r.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
            var perBatch = new Dictionary<int, double[]>();
            foreach (int batch in new[] { 1, 8 })
            {
                var x = Speed.RandomInput((long)batch * input.Channels * input.Height * input.Width, 2);
                perBatch[batch] = Speed.MedianMs(bytes, input.Name, x, input.Shape(batch), batch == 1 ? rounds : Math.Max(10, rounds / 2));
            }
            string[] rowLabels = ["FP32", .. variants.Select(v => v.Label)];
            for (int i = 0; i < bytes.Count; i++)
            {
                double b1 = perBatch[1][i], b8 = perBatch[8][i];
                r.AppendLine($"| {rowLabels[i]} | {b1:0.00} | {perBatch[1][0] / b1:0.00}× | {b8:0.00} | {perBatch[8][0] / b8:0.00}× | {bytes[i].Length / 1048576.0:0.00} MiB | {(double)bytes[i].Length / bytes[0].Length:0.000} |");
                Console.WriteLine($"{name} {rowLabels[i]}: b1 {b1:0.00} ms ({perBatch[1][0] / b1:0.00}x), b8 {b8:0.00} ms ({perBatch[8][0] / b8:0.00}x), {bytes[i].Length} bytes");
            }
            r.AppendLine();
            // The fastest stock-ONNX-Runtime int8 model of the same plan: portable QDQ or --format ort.
            int At(string label) => Array.IndexOf(rowLabels, label);
            int native8 = At("native, minmax W8A8"), portable8 = At("portable QDQ, minmax W8A8"), ort8 = At("ort, minmax W8A8");
            string Versus(int batch) => $"{Math.Min(perBatch[batch][portable8], perBatch[batch][ort8]) / perBatch[batch][native8]:0.00}×";
            r.AppendLine($"Native W8A8 against the faster of portable QDQ and `--format ort` (W8A8): {Versus(1)} at batch 1, {Versus(8)} at batch 8.");
            int unfused = At("native, minmax W8A8, attention not fused");
            r.AppendLine($"`fuse-native-attention` ({(fusedAttentions[name] == 0 ? "no attention of this model has the form it fuses" : $"{fusedAttentions[name]} attention(s) fused")}): " +
                         $"{perBatch[1][unfused] / perBatch[1][native8]:0.00}× at batch 1, {perBatch[8][unfused] / perBatch[8][native8]:0.00}× at batch 8.");
            r.AppendLine();
        }
        r.AppendLine();
        return r;
    }

    private static void AppendGemmTable(StringBuilder r, double allCores, int rounds)
    {
        r.AppendLine("### Per-GEMM throughput (com.onnxvitq.QuantizedLinear, per-token activations quantized in the op)");
        r.AppendLine();
        r.AppendLine("GOPS = 2·M·K·N / median op time: the op's whole work (per-token quantization, integer GEMM, dequantize + bias), as ONNX Runtime's profiler times the node's");
        r.AppendLine("Compute in the same interleaved runs (µs resolution). \"Run\" = the median of the whole `Run` call of the single-op model, which adds what a Run costs around its");
        r.AppendLine("ops (feeding the input, allocating and handing back the output, dispatch): in a whole model every op shares that once. FP32 = ONNX Runtime MatMul + Add of the");
        r.AppendLine("same shape (fused by ORT_ENABLE_ALL), timed the same way; \"int8 vs FP32\" compares op times.");
        r.AppendLine();
        r.AppendLine("| M×K×N | int8 op ms | int8 GOPS | % of peak | int8 Run ms | int4 op ms | int4 GOPS | FP32 op ms | FP32 Run ms | int8 vs FP32 |");
        r.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var (m, k, n) in new[] { (197, 192, 768), (197, 192, 576), (197, 192, 192), (197, 768, 192), (1576, 192, 768), (1576, 768, 192) })
        {
            var x = Speed.RandomInput((long)m * k, 1);
            var t = Speed.MedianRunAndOpMs([Speed.GemmModel(m, k, n, 8), Speed.GemmModel(m, k, n, 4), Speed.FloatGemmModel(m, k, n)], "x", x, [m, k], rounds * 5);
            double ops = 2.0 * m * k * n / 1e9;
            string peak = allCores > 0 ? $"{100 * ops / (t[0].OpMs / 1e3) / allCores:0} %" : "—";
            r.AppendLine($"| {m}×{k}×{n} | {t[0].OpMs:0.000} | {ops / (t[0].OpMs / 1e3):0} | {peak} | {t[0].RunMs:0.000} | {t[1].OpMs:0.000} | {ops / (t[1].OpMs / 1e3):0} | {t[2].OpMs:0.000} | {t[2].RunMs:0.000} | {t[2].OpMs / t[0].OpMs:0.00}× |");
            Console.WriteLine($"gemm {m}x{k}x{n}: op (Run) int8 {t[0].OpMs:0.000} ({t[0].RunMs:0.000}) ms, int4 {t[1].OpMs:0.000} ({t[1].RunMs:0.000}) ms, fp32 {t[2].OpMs:0.000} ({t[2].RunMs:0.000}) ms");
        }
        r.AppendLine();
    }
}
