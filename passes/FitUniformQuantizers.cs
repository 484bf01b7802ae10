using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Patterns;
using OnnxViTQ.Quantization;

namespace OnnxViTQ.Passes;

/// <summary>
/// Builds the <see cref="QuantizationPlan"/> of the uniform baselines: weights symmetric per
/// output channel from their max |w|; activations asymmetric per tensor over the range the
/// estimator picks from calibration statistics.
/// </summary>
public sealed class FitUniformQuantizers(BitWidths bits, IRangeEstimator estimator) : IPass
{
    public string Name => "fit-uniform-quantizers";

    public PassResult Run(Model model, PassContext context)
    {
        var targets = context.Get<QuantizationTargets>();
        var plan = new QuantizationPlan();
        foreach (var group in targets.All.GroupBy(t => t.Value))
        {
            var value = group.Key;
            var uses = group.Select(t => t.Use).ToList();
            var role = group.First().Role;
            IQuantizer quantizer;
            if (role == TensorRole.Weight)
            {
                if (!Constants.TryGetTensor(value, out var w)) throw new InvalidOperationException($"weight '{value.Name}' is not constant");
                // A weight shared by nodes that want different channel axes falls back to per tensor.
                var axes = group.Select(t => t.ChannelAxis).Distinct().ToList();
                int? axis = axes.Count == 1 ? axes[0] : null;
                quantizer = UniformQuantizer.SymmetricFromMaxAbs(AxisLayout.MaxAbs(w.ToFloats(), w.Dims.ToArray(), axis), bits.Weights, axis);
            }
            else
            {
                var (min, max) = estimator.Estimate(context.Get<ActivationStatistics>().For(value));
                quantizer = UniformQuantizer.AsymmetricFromRange(min, max, bits.Activations);
            }
            plan.Add(new TensorQuantization(value, role, quantizer, uses));
        }
        context.Set(plan);
        return PassResult.Unchanged;
    }
}
