namespace OnnxViTQ.Quantization;

/// <summary>A C-order tensor seen as [outer, channels, inner] around one axis: element
/// (o, c, i) sits at (o·channels + c)·inner + i.</summary>
internal readonly record struct AxisLayout(int Outer, int Channels, int Inner)
{
    public static AxisLayout Of(ReadOnlySpan<long> shape, int axis)
    {
        if (axis < 0 || axis >= shape.Length) throw new ArgumentOutOfRangeException(nameof(axis), axis, $"rank is {shape.Length}");
        int outer = 1, inner = 1;
        for (int i = 0; i < axis; i++) outer *= (int)shape[i];
        for (int i = axis + 1; i < shape.Length; i++) inner *= (int)shape[i];
        return new AxisLayout(outer, (int)shape[axis], inner);
    }

    /// <summary>max |x| of each channel along <paramref name="axis"/>, or of everything when null.</summary>
    public static float[] MaxAbs(ReadOnlySpan<float> values, ReadOnlySpan<long> shape, int? axis)
    {
        if (axis is null) return [values.IsEmpty ? 0 : MathF.Abs(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(values))];
        var layout = Of(shape, axis.Value);
        var result = new float[layout.Channels];
        for (int o = 0; o < layout.Outer; o++)
            for (int c = 0; c < layout.Channels; c++)
            {
                var block = values.Slice((o * layout.Channels + c) * layout.Inner, layout.Inner);
                if (!block.IsEmpty) result[c] = Math.Max(result[c], MathF.Abs(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(block)));
            }
        return result;
    }
}
