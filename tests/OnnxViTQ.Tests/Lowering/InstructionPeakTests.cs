using OnnxViTQ.Runtime;

using OnnxViTQ.Tests.Support;

namespace OnnxViTQ.Tests.Lowering;

/// <summary>The register-only instruction peaks the speed benchmark reads GEMM throughput against:
/// positive on a CPU with the instructions, 0 without them or for an unknown kind; the u8×s8 step
/// (two multiply instructions for 32 MACs) is of the order of the int16 one (one for 16).</summary>
[NonParallelizable]
public class InstructionPeakTests
{
    [Test]
    public void Avx2PeaksAreMeasuredWhereTheCpuHasAvx2()
    {
        NativeOpsAvailability.Require();
        bool avx2 = NativeOps.SupportedPaths.Split(',').Contains("avx2");
        var peaks = Enumerable.Range(0, 3).Select(kind => NativeOps.Avx2PeakGops(0.05, kind)).ToArray();
        if (!avx2)
        {
            Assert.That(peaks, Is.All.EqualTo(0.0));
            return;
        }
        Assert.That(peaks, Is.All.GreaterThan(1.0), "GOPS of madd, maddubs, fma");
        Assert.That(peaks[1], Is.GreaterThan(0.4 * peaks[0]));
        Assert.That(NativeOps.Avx2PeakGops(0.01, 7), Is.EqualTo(0.0), "unknown kind");
    }
}
