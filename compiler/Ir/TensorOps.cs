namespace OnnxViTQ.Ir;

/// <summary>Layout operations on constant tensors (used to fold constants at compile time).</summary>
internal static class TensorOps
{
    /// <summary>ONNX Transpose: output dim i is input dim perm[i]; perm defaults to reversed axes.</summary>
    public static Tensor Transpose(Tensor t, IReadOnlyList<long>? perm)
    {
        int rank = t.Rank;
        var p = perm?.Select(x => (int)x).ToArray() ?? Enumerable.Range(0, rank).Reverse().ToArray();
        if (p.Length != rank || p.Order().Where((v, i) => v != i).Any())
            throw new ArgumentException($"perm [{string.Join(",", p)}] is not a permutation of rank {rank}");
        int bits = t.DataType.BitWidth();
        if (bits == 0 || bits % 8 != 0) throw new NotSupportedException($"cannot transpose {t.DataType.OnnxName()} tensors");
        int size = bits / 8;
        var inDims = t.Dims.ToArray();
        var outDims = p.Select(a => inDims[a]).ToArray();
        var inStrides = new long[rank];
        for (int i = rank - 1, s = 1; i >= 0; s *= (int)inDims[i], i--) inStrides[i] = s;
        var src = t.RawBytes;
        var dst = new byte[src.Length];
        var index = new long[rank];
        for (long o = 0; o < t.ElementCount; o++)
        {
            long from = 0;
            for (int i = 0; i < rank; i++) from += index[i] * inStrides[p[i]];
            src.Slice((int)(from * size), size).CopyTo(dst.AsSpan((int)(o * size), size));
            for (int i = rank - 1; i >= 0; i--)
            {
                if (++index[i] < outDims[i]) break;
                index[i] = 0;
            }
        }
        return Tensor.FromRaw(t.DataType, outDims, dst);
    }
}
