namespace OnnxViTQ.Data;

/// <summary>A batch of preprocessed samples, float32 NCHW; <see cref="Data"/> holds exactly
/// <see cref="Count"/> samples.</summary>
internal sealed record SampleBatch(float[] Data, int Count, IReadOnlyList<int> SampleShape)
{
    /// <summary>This batch grown to <paramref name="size"/> samples by repeating its last sample,
    /// for models exported with a fixed batch size; results for the copies are to be ignored.</summary>
    public SampleBatch PadTo(int size)
    {
        if (size <= Count) return this;
        int sample = Data.Length / Count;
        var data = new float[size * sample];
        Data.CopyTo(data, 0);
        for (int i = Count; i < size; i++) Data.AsSpan((Count - 1) * sample, sample).CopyTo(data.AsSpan(i * sample));
        return new SampleBatch(data, size, SampleShape);
    }
}

/// <summary>
/// Samples for calibration or evaluation, already in the model's input layout. Batches are
/// produced lazily so memory stays bounded by the batch size, not the number of samples.
/// </summary>
internal interface ICalibrationSource
{
    /// <summary>The file or folder, for messages.</summary>
    string Name { get; }

    int Count { get; }

    /// <summary>Shape of one sample, e.g. [3, 224, 224].</summary>
    IReadOnlyList<int> SampleShape { get; }

    /// <summary>Batches of up to <paramref name="batchSize"/> samples, the first
    /// <paramref name="maxSamples"/> samples in order.</summary>
    IEnumerable<SampleBatch> ReadBatches(int batchSize, int maxSamples = int.MaxValue);
}
