namespace OnnxViTQ.Passes.Lowering;

/// <summary>
/// The packed weight layout of <c>com.onnxvitq.QuantizedLinear</c> (runtime-ops/src/kernels.h):
/// output columns in panels of 16, K in groups of 4; block (panel p, group g) holds 64 codes,
/// W[4g + j, 16p + c] at index 4c + j — one 512-bit register whose 32-bit lane c feeds a VNNI
/// dot product of column c. Padding is code 0. int4 stores a block in 32 bytes, byte i =
/// (code[i] &amp; 15) | (code[i + 32] &lt;&lt; 4). The op has no pre-pack hook, so the model carries
/// this layout.
/// </summary>
internal static class NativeWeightLayout
{
    public const int Panel = 16;
    public const int Group = 4;
    private const int BlockCodes = Panel * Group;

    public static int PaddedK(int k) => (k + Group - 1) / Group * Group;
    public static int PaddedN(int n) => (n + Panel - 1) / Panel * Panel;

    public static long Bytes(int k, int n, int bits) => (long)PaddedK(k) * PaddedN(n) * bits / 8;

    /// <summary>Packs the codes <paramref name="code"/>(k, n) of a [K, N] weight at 8 or 4 bits.</summary>
    public static byte[] Pack(Func<int, int, int> code, int k, int n, int bits)
    {
        if (bits is not (8 or 4)) throw new ArgumentOutOfRangeException(nameof(bits), bits, "packed weights are int8 or int4");
        int kp = PaddedK(k), np = PaddedN(n);
        var packed = new byte[Bytes(k, n, bits)];
        var block = new int[BlockCodes];
        int at = 0;
        for (int p = 0; p < np / Panel; p++)
            for (int g = 0; g < kp / Group; g++)
            {
                for (int c = 0; c < Panel; c++)
                    for (int j = 0; j < Group; j++)
                    {
                        int kk = g * Group + j, nn = p * Panel + c;
                        int v = kk < k && nn < n ? code(kk, nn) : 0;
                        if (v < -(1 << (bits - 1)) || v >= 1 << (bits - 1)) throw new ArgumentException($"code {v} at ({kk}, {nn}) does not fit {bits} bits");
                        block[c * Group + j] = v;
                    }
                if (bits == 8)
                    for (int i = 0; i < BlockCodes; i++) packed[at++] = (byte)(sbyte)block[i];
                else
                    for (int i = 0; i < BlockCodes / 2; i++) packed[at++] = (byte)((block[i] & 15) | ((block[i + BlockCodes / 2] & 15) << 4));
            }
        return packed;
    }
}
