using Microsoft.ML.OnnxRuntime;
using OnnxViTQ.Data;
using OnnxViTQ.Ir;
using OnnxViTQ.Serialization;

namespace OnnxViTQ.Runtime;

/// <summary>The model's image input: name and per-sample shape [C,H,W]; the batch dimension is
/// fixed to <see cref="FixedBatch"/> when the export did not make it dynamic.</summary>
internal sealed record ImageInput(string Name, int Channels, int Height, int Width, int? FixedBatch)
{
    public int[] SampleShape => [Channels, Height, Width];

    /// <summary>The single float NCHW input of <paramref name="model"/>.</summary>
    public static ImageInput Of(Model model, string modelName)
    {
        var inputs = model.Graph.Inputs.Where(v => !v.IsInitializer).ToList();
        if (inputs.Count != 1)
            throw new OnnxViTQException($"'{modelName}' has {inputs.Count} inputs ({string.Join(", ", inputs.Select(i => i.Name))}); only single-image-input models are supported");
        var input = inputs[0];
        var shape = input.Type?.Shape;
        if (input.Type is null || shape is null || shape.Count != 4 || !input.Type.ElementType.IsFloatingPoint())
            throw new OnnxViTQException($"'{modelName}' input '{input.Name}' is {input.Type?.ToString() ?? "untyped"}; a float image tensor [N,C,H,W] was expected");
        // Calibration and evaluation feed float32 batches; ONNX Runtime would reject them for a
        // float16/float64 input only at the first run, after minutes of setup.
        if (input.Type.ElementType != DataType.Float)
            throw new OnnxViTQException($"'{modelName}' input '{input.Name}' is {input.Type.ElementType.OnnxName()}; only float32 image inputs are supported (export the model in float32)");
        if (shape.Skip(1).Any(d => d.Size is null))
            throw new OnnxViTQException($"'{modelName}' input '{input.Name}' has shape [{string.Join(",", shape)}]; channels, height and width must be fixed");
        // A fixed batch must be a usable count: 0 (which ONNX Runtime accepts) would make every
        // calibration source step by 0 forever, and a huge one would wrap as an int.
        if (shape[0].Size is { } fixedBatch && fixedBatch is < 1 or > 65536)
            throw new OnnxViTQException($"'{modelName}' input '{input.Name}' has a fixed batch of {fixedBatch}; it must be 1 to 65536 (or dynamic)");
        if (shape.Skip(1).Any(d => d.Size is < 1 or > 1 << 20))
            throw new OnnxViTQException($"'{modelName}' input '{input.Name}' has shape [{string.Join(",", shape)}]; channels, height and width must be 1 to {1 << 20}");
        long sample = shape[1].Size!.Value * shape[2].Size!.Value * shape[3].Size!.Value;
        if (sample > MaxSampleElements)
            throw new OnnxViTQException($"'{modelName}' input '{input.Name}' has shape [{string.Join(",", shape)}]: {sample} values per image, more than the {MaxSampleElements} this tool feeds");
        int? batch = shape[0].Size is { } b ? (int)b : null;
        var result = new ImageInput(input.Name, (int)shape[1].Size!, (int)shape[2].Size!, (int)shape[3].Size!, batch);
        if (batch is { } fixedSize) result.EnsureBatchFits(fixedSize, modelName);
        return result;
    }

    /// <summary>Values in one image (C·H·W) and in one batch: every batch buffer is one float array.</summary>
    public const long MaxSampleElements = 1L << 26, MaxBatchElements = 1L << 28;

    public long SampleElements => (long)Channels * Height * Width;

    /// <summary>Fails unless a batch of <paramref name="batch"/> images fits one buffer.</summary>
    public void EnsureBatchFits(int batch, string what)
    {
        if (batch < 1 || batch * SampleElements > MaxBatchElements)
            throw new OnnxViTQException($"'{what}': a batch of {batch} images of [{string.Join(",", SampleShape)}] is {batch * SampleElements} values; batches hold 1 image up to {MaxBatchElements} values (lower the batch size)");
    }

    /// <summary>Fails unless <paramref name="source"/>'s samples fit this input.</summary>
    public void EnsureFits(ICalibrationSource source)
    {
        if (!source.SampleShape.SequenceEqual(SampleShape))
            throw new OnnxViTQException(
                $"data '{source.Name}' has samples of shape [{string.Join(",", source.SampleShape)}], but model input '{Name}' expects [{string.Join(",", SampleShape)}] per sample (NCHW)");
    }

    /// <summary>
    /// Batches of <paramref name="source"/> ready to feed this input: checked against its shape,
    /// sized to the export's fixed batch if it has one, the last batch then padded with copies of
    /// its last sample. <c>Real</c> is how many leading samples are real.
    /// </summary>
    public IEnumerable<(SampleBatch Batch, int Real)> Batches(ICalibrationSource source, int requestedBatchSize, int maxSamples = int.MaxValue)
    {
        EnsureFits(source);
        EnsureBatchFits(FixedBatch ?? requestedBatchSize, source.Name);
        foreach (var read in source.ReadBatches(FixedBatch ?? requestedBatchSize, maxSamples))
            yield return (FixedBatch is { } b ? read.PadTo(b) : read, read.Count);
    }

    public long[] Shape(int batch) => [batch, Channels, Height, Width];
}

/// <summary>Creates ONNX Runtime sessions with this project's settings and turns ONNX Runtime's
/// load failures into one-line errors that name the model.
/// Sessions run QDQ groups as written (<see cref="QdqExecution.Reference"/>) unless asked otherwise,
/// so what the compiler measures on a quantized model does not depend on this CPU's int8 kernels.</summary>
internal static class OrtRuntime
{
    public static InferenceSession CreateSession(Model model, string modelName, QdqExecution qdq = QdqExecution.Reference) =>
        CreateSession(OnnxModelWriter.ToBytes(model), modelName, qdq);

    /// <summary>A session on the file itself (ONNX Runtime resolves its external data). A file with
    /// a LayerNormalization naming a trailing input "" goes through this project's reader and writer
    /// instead, which leave such inputs out: ONNX Runtime 1.32 crashes the process on it
    /// (the writer leaves them out of LayerNormalization nodes).</summary>
    public static InferenceSession CreateSession(string modelPath, QdqExecution qdq = QdqExecution.Reference, SessionThreads? threads = null) =>
        NamesTrailingEmptyInputs(modelPath)
            ? CreateSession(OnnxModelWriter.ToBytes(OnnxModelReader.Load(modelPath)), modelPath, qdq, threads)
            : Create(options => new InferenceSession(modelPath, options), modelPath, qdq, threads);

    private static bool NamesTrailingEmptyInputs(string modelPath)
    {
        Onnx.ModelProto proto;
        try
        {
            using var stream = File.OpenRead(modelPath);
            proto = Onnx.ModelProto.Parser.ParseFrom(stream);
        }
        catch (Exception e) when (e is Google.Protobuf.InvalidProtocolBufferException or IOException)
        {
            return false; // ONNX Runtime reports what is wrong with the file
        }
        return proto.Graph is { } graph && Any(graph);

        static bool Any(Onnx.GraphProto g) => g.Node.Any(n =>
            (n.OpType == "LayerNormalization" && n.Domain is "" or "ai.onnx" && n.Input.Count > 0 && n.Input[^1].Length == 0)
            || n.Attribute.Any(a => (a.G is { } sub && Any(sub)) || a.Graphs.Any(Any)));
    }

    /// <summary>A session on serialized model bytes; <paramref name="configure"/> adds settings of the
    /// caller's own (the benchmarks' profiling) after this project's.</summary>
    public static InferenceSession CreateSession(byte[] modelBytes, string modelName, QdqExecution qdq = QdqExecution.Reference, SessionThreads? threads = null,
        Action<SessionOptions>? configure = null) =>
        Create(options => new InferenceSession(modelBytes, options), modelName, qdq, threads, configure);

    private static InferenceSession Create(Func<SessionOptions, InferenceSession> open, string modelName, QdqExecution qdq, SessionThreads? threads,
        Action<SessionOptions>? configure = null)
    {
        threads ??= SessionThreads.Default;
        var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            IntraOpNumThreads = threads.IntraOp,
            InterOpNumThreads = 1,
            // ONNX Runtime's warnings (e.g. about initializers it prunes) would interleave with
            // the CLI's output; real failures still surface as exceptions.
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        if (threads.Shared) options.DisablePerSessionThreads();
        else if (!threads.Spinning) options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        if (qdq == QdqExecution.Reference) options.AddSessionConfigEntry("session.disable_quant_qdq", "1");
        configure?.Invoke(options);
        try
        {
            ExecutionDevice.Current.AddTo(options);
            NativeOps.RegisterIfAvailable(options);
            OrtExtensionsLibrary.RegisterIfAvailable(options);
            return open(options);
        }
        catch (OnnxRuntimeException e)
        {
            string hint = e.Message.Contains(NativeOps.Domain) && NativeOps.Unavailable is { } why ? $" (the model uses {NativeOps.Domain} ops: {why})"
                : e.Message.Contains(Data.EmbeddedPreprocessing.ExtensionsDomain) && OrtExtensionsLibrary.Unavailable is { } missing ? $" (the model uses {Data.EmbeddedPreprocessing.ExtensionsDomain} ops: {missing})"
                : "";
            throw new OnnxViTQException($"ONNX Runtime cannot load '{modelName}': {FirstLine(e.Message)}{hint}", e);
        }
        finally
        {
            options.Dispose();
        }
    }

    /// <summary>Runs <paramref name="session"/> on float32 tensors by input name and returns the named float outputs.</summary>
    public static float[][] Run(InferenceSession session, IReadOnlyList<(string Name, float[] Data, long[] Shape)> feeds, string[] outputs)
    {
        var values = feeds.Select(f => OrtValue.CreateTensorValueFromMemory(f.Data, f.Shape)).ToList();
        try
        {
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, feeds.Select(f => f.Name).ToArray(), values, outputs);
            return results.Select(r => r.GetTensorDataAsSpan<float>().ToArray()).ToArray();
        }
        finally { foreach (var v in values) v.Dispose(); }
    }

    public static string FirstLine(string message) => message.Split('\n')[0].Trim();
}

/// <summary>A session's intra-op threads and whether its idle pool threads spin (ONNX Runtime's
/// default), or (<see cref="Shared"/>) the process's one shared pool.</summary>
internal sealed record SessionThreads(int IntraOp, bool Spinning, bool Shared = false)
{
    public static SessionThreads Default => new(Environment.ProcessorCount, Spinning: true);

    /// <summary>
    /// For sessions timed one after another (the benchmarks): all of them on one pool of
    /// <paramref name="threads"/> threads, created with the process's ONNX Runtime environment, its
    /// idle threads spinning as in a deployment that runs one model. With a pool per session, a
    /// finished session's spinning threads took the cores from the next one (DeiT-Tiny at batch 1:
    /// FP32 41 ms timed after the native model, 22 ms alone); with spinning off instead, every op
    /// waits for its threads to wake (a 197×192×768 QuantizedLinear 0.13 ms against 0.07 ms).
    /// When the environment already exists (something in this process ran ONNX Runtime before),
    /// the sessions get their own pools without spinning.
    /// </summary>
    public static SessionThreads SharedPool(int threads)
    {
        lock (PoolLock)
        {
            if (_pool is { } pool) return pool.IntraOp == threads ? pool : new(threads, Spinning: false);
            if (OrtEnv.IsCreated) return new(threads, Spinning: false);
            var options = new EnvironmentCreationOptions
            {
                threadOptions = new OrtThreadingOptions { GlobalIntraOpNumThreads = threads, GlobalInterOpNumThreads = 1, GlobalSpinControl = true },
                logLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
            };
            OrtEnv.CreateInstanceWithOptions(ref options);
            _pool = new(threads, Spinning: true, Shared: true);
            return _pool;
        }
    }

    private static readonly object PoolLock = new();
    private static SessionThreads? _pool;
}
