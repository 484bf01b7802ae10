using OnnxViTQ.Ir;
using OnnxViTQ.Runtime;

namespace OnnxViTQ.Data;

/// <summary>
/// Makes a model take an encoded image — PNG or JPEG bytes, a uint8 1-D tensor, one image per run —
/// instead of a float NCHW tensor: ONNX Runtime Extensions' <c>DecodeImage</c> (domain
/// <c>com.microsoft.extensions</c>, RGB), then <see cref="ImagePreprocessing"/>'s own arithmetic in standard
/// ONNX ops: resize the shorter side to ⌊size/crop⌋ (bilinear, half-pixel centres, the source
/// clamped at its edges), center-crop, convert channels, x/255, (x − mean)/std. The same float
/// operations in the same order as the C# preprocessing calibration used, so the tensor the
/// network sees is the calibration data's (tests: within one 8-bit code). Sessions that run such a
/// model register the Extensions library (every session this project creates does).
/// </summary>
internal static class EmbeddedPreprocessing
{
    public const string ExtensionsDomain = "com.microsoft.extensions";
    public const string InputName = "image_bytes";

    /// <summary>Name of the value the network reads (the preprocessed [1, C, H, W] tensor).</summary>
    public const string TensorName = "preprocessed_pixel_values";

    /// <summary>Whether <paramref name="model"/> takes an encoded image (this class's form).</summary>
    public static bool TakesImageBytes(Model model) =>
        model.Graph.Inputs.Where(v => !v.IsInitializer).ToList() is [{ Type: { ElementType: DataType.UInt8, Shape.Count: 1 } } input]
        && input.Consumers.Any(c => c.Node is { OpType: "DecodeImage", Domain: ExtensionsDomain });

    /// <summary>The image files of a folder, for an image-bytes model; other data cannot be fed to one.</summary>
    public static List<string> ImageFiles(string dataPath, string modelPath)
    {
        var files = Directory.Exists(dataPath) ? ImageFolderSource.FindImages(dataPath) : [];
        if (files.Count == 0)
            throw new OnnxViTQException($"'{modelPath}' takes encoded images; evaluate it on a folder of PNG/JPEG/BMP files, not '{dataPath}'");
        return files;
    }

    public static void Embed(Model model, ImageInput input, ImagePreprocessing pre, string modelName)
    {
        if (input.FixedBatch is { } b && b != 1)
            throw new OnnxViTQException($"'{modelName}' input '{input.Name}' has a fixed batch of {b}; an image-bytes model decodes one image per run (export it with a dynamic or unit batch)");
        if (model.DefaultOpset < 13)
            throw new OnnxViTQException($"'{modelName}' is opset {model.DefaultOpset}; embedding the preprocessing needs opset 13 or later");
        if (pre.Channels is not (1 or 3))
            throw new OnnxViTQException($"'{modelName}' input '{input.Name}' has {pre.Channels} channels; an image-bytes model feeds 1 (grey) or 3 (RGB)");
        var g = model.Graph;
        var old = g.Inputs.First(v => v.Name == input.Name);
        var anchor = g.Nodes.FirstOrDefault();
        var bytes = g.AddInput(g.UniqueName(InputName), new TensorTypeInfo(DataType.UInt8, [Dim.Named("encoded_length")]));

        Value Op(string type, string name, IEnumerable<Value?> inputs, params AttributeValue[] attributes) =>
            g.AddNode(type, inputs, [g.UniqueName(name)], attributes, "", g.UniqueName($"preprocess_{name}"), before: anchor).Output();
        Value Floats(string name, long[] dims, params float[] values) => g.AddInitializer(g.UniqueName($"preprocess_{name}"), Tensor.FromFloats(dims, values));
        Value Float(string name, float value) => Floats(name, [], value);
        Value Longs(string name, params long[] values) => g.AddInitializer(g.UniqueName($"preprocess_{name}"), Tensor.From<long>(DataType.Int64, [values.Length], values));

        // [H, W, 3] uint8 RGB → [1, 3, H, W] float.
        var decoded = g.AddNode("DecodeImage", [bytes], [g.UniqueName("decoded_image")], [AttributeValue.String("color_space", "rgb")], ExtensionsDomain,
            g.UniqueName("preprocess_decode"), before: anchor).Output();
        var pixels = Op("Unsqueeze", "pixels_batch", [Op("Transpose", "pixels_chw", [Op("Cast", "pixels_float", [decoded], AttributeValue.Int("to", (long)DataType.Float))],
            AttributeValue.Ints("perm", [2, 0, 1])), Longs("batch_axis", 0)]);

        // The resized size, as ImagePreprocessing.Apply computes it in float32.
        Value resizedH, resizedW;
        if (pre.Height != pre.Width)
        {
            // A non-square input: resized to (⌊H/crop⌋, ⌊W/crop⌋) whatever the image's shape.
            var (fixedH, fixedW) = pre.ResizedSize(1, 1);
            resizedH = Float("resized_height_fixed", fixedH);
            resizedW = Float("resized_width_fixed", fixedW);
        }
        else
        {
            var shape = Op("Shape", "decoded_shape", [decoded]);
            Value Side(int axis, string name) => Op("Cast", $"{name}_float", [Op("Gather", name, [shape, g.AddInitializer(g.UniqueName($"preprocess_{name}_axis"), Tensor.From<long>(DataType.Int64, [], [axis]))],
                AttributeValue.Int("axis", 0))], AttributeValue.Int("to", (long)DataType.Float));
            var h = Side(0, "source_height");
            var w = Side(1, "source_width");
            float scaledShort = MathF.Floor(Math.Min(pre.Height, pre.Width) / pre.CropFraction);
            var shortSide = Op("Min", "short_side", [h, w]);
            var scale = Op("Div", "resize_scale", [Float("scaled_short", scaledShort), shortSide]);
            var heightIsShort = Op("Equal", "height_is_short", [shortSide, h]);
            resizedH = Op("Where", "resized_height", [heightIsShort, Float("scaled_short_h", scaledShort), Op("Round", "resized_height_raw", [Op("Mul", "scaled_height", [h, scale])])]);
            resizedW = Op("Where", "resized_width", [heightIsShort, Op("Round", "resized_width_raw", [Op("Mul", "scaled_width", [w, scale])]), Float("scaled_short_w", scaledShort)]);
        }
        Value Int64(Value v, string name) => Op("Unsqueeze", $"{name}_1d", [Op("Cast", $"{name}_int", [v], AttributeValue.Int("to", (long)DataType.Int64)), Longs($"{name}_axis", 0)]);
        var sizes = Op("Concat", "resize_sizes", [Longs("batch_channels", 1, 3), Int64(resizedH, "resized_height"), Int64(resizedW, "resized_width")], AttributeValue.Int("axis", 0));
        var resized = g.AddNode("Resize", [pixels, null, null, sizes], [g.UniqueName("resized")],
            [AttributeValue.String("mode", "linear"), AttributeValue.String("coordinate_transformation_mode", "half_pixel")], "", g.UniqueName("preprocess_resize"), before: anchor).Output();

        // The centred crop: top = round((resized − size)/2), likewise left.
        Value Offset(Value resizedSide, int size, string name) =>
            Int64(Op("Round", $"{name}_raw", [Op("Div", $"{name}_half", [Op("Sub", $"{name}_margin", [resizedSide, Float($"{name}_size", size)]), Float($"{name}_two", 2f)])]), name);
        var starts = Op("Concat", "crop_starts", [Longs("crop_start_nc", 0, 0), Offset(resizedH, pre.Height, "crop_top"), Offset(resizedW, pre.Width, "crop_left")], AttributeValue.Int("axis", 0));
        var ends = Op("Add", "crop_ends", [starts, Longs("crop_extent", 1, 3, pre.Height, pre.Width)]);
        var cropped = Op("Slice", "cropped", [resized, starts, ends]);

        // Channels as ImagePreprocessing.ChannelValue: RGB as is, or ITU-R 601 luma for a grey model.
        if (pre.Channels == 1)
            cropped = Op("ReduceSum", "luma", [Op("Mul", "luma_terms", [cropped, Floats("luma_weights", [1, 3, 1, 1], 0.299f, 0.587f, 0.114f)]), Longs("channel_axis", 1)],
                AttributeValue.Int("keepdims", 1));
        long[] perChannel = [1, pre.Channels, 1, 1];
        var normalised = Op("Div", TensorName, [Op("Sub", "centred", [Op("Div", "unit_range", [cropped, Float("max_code", 255f)]), Floats("mean", perChannel, pre.Mean)]),
            Floats("std", perChannel, pre.Std)]);
        normalised.Type = TensorTypeInfo.Of(DataType.Float, 1, pre.Channels, pre.Height, pre.Width);

        old.ReplaceUsesWith(normalised);
        g.RemoveInput(old);
        if (model.OpsetVersion(ExtensionsDomain) == 0) model.OpsetImports.Add(new OpsetImport(ExtensionsDomain, 1));
    }
}
