using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>How close a quantized model's outputs are to the FP32 model's on the check samples:
/// each sample's KL of the class distributions and whether its top-1 class is the same.</summary>
internal sealed record Fidelity(double[] Kl, bool[] SameTop1)
{
    public double MeanKl => Kl.Average();
    public int Agreeing => SameTop1.Count(s => s);
    public double Agreement => (double)Agreeing / SameTop1.Length;

    /// <summary><paramref name="outputs"/> against the FP32 <paramref name="reference"/>, sample by sample.</summary>
    public static Fidelity Of(IReadOnlyList<float[]> reference, IReadOnlyList<float[]> outputs) =>
        new(PlanOutputs.MeanKl(reference, outputs).PerSample, reference.Zip(outputs, (r, o) => ArgMax(r) == ArgMax(o)).ToArray());

    private static int ArgMax(float[] v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}

/// <summary>
/// End-to-end check of a plan decision: the FP32 model and the quantized model (the plan emitted
/// as portable QDQ on a copy, optionally edited) run by ONNX Runtime on the first
/// <paramref name="Samples"/> calibration samples. Passes that change many layers at once compare
/// their candidates here, since each layer-local choice can be right for its layer and still cost
/// the network accuracy.
/// </summary>
internal sealed record PlanCheck(ICalibrationSource Source, int BatchSize, int Samples, string ModelName)
{
    /// <summary>The FP32 outputs every <see cref="Measure"/> compares with.</summary>
    public float[][] Reference(Model model) => PlanOutputs.Run(model, Source, BatchSize, Samples, ModelName);

    public Fidelity Measure(Model model, QuantizationPlan plan, float[][] reference, Action<Model, Func<Node, Node>, QuantizationPlan>? edit = null)
    {
        var outputs = PlanOutputs.Run(PlanOutputs.Emitted(model, plan, edit), Source, BatchSize, Samples, ModelName);
        return Fidelity.Of(reference, outputs);
    }

    /// <summary>A change from <paramref name="without"/> to <paramref name="with"/>, paired per sample.</summary>
    public static Verdict Compare(Fidelity without, Fidelity with)
    {
        var d = without.Kl.Zip(with.Kl, (x, y) => x - y).ToArray();
        double mean = d.Average();
        double se = d.Length < 2 ? double.PositiveInfinity : Math.Sqrt(d.Sum(v => (v - mean) * (v - mean)) / (d.Length - 1) / d.Length);
        return new Verdict(d.Length, without.MeanKl, with.MeanKl, se, without.Agreeing, with.Agreeing);
    }

    /// <summary>Mean KL to FP32 without and with a change, the standard error of their per-sample
    /// difference, and how many samples keep the FP32 top-1 class without and with it.</summary>
    public sealed record Verdict(int Samples, double Without, double With, double StandardError, int AgreeingWithout, int AgreeingWith)
    {
        /// <summary>A change worth keeping over the model as it is: it lowers the mean KL by more than
        /// <see cref="Significance"/> standard errors — a gain within sampling noise is not worth a
        /// changed model (measured: an accepted gain of 0.7 standard errors on swin W4A4 lost 0.15 pt
        /// on evaluation data) — and no fewer samples keep their FP32 class. KL alone is not enough:
        /// on vit W4A4 bias correction lowered it by 4 standard errors (0.050 → 0.038, and on the
        /// evaluation images too) while 2 more of 512 calibration samples changed class, and it cost
        /// 0.3 pt top-1 on the evaluation images.</summary>
        public bool Improves => Without - With > Significance * StandardError && AgreeingWith >= AgreeingWithout;

        public override string ToString() =>
            $"mean KL to FP32 {Without:g4} → {With:g4} (standard error of the difference {StandardError:g2}), top-1 kept on {AgreeingWithout} → {AgreeingWith} of {Samples} samples";
    }

    public const double Significance = 1.5;
}
