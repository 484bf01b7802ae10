using System.Globalization;
using OnnxViTQ.Ir;

namespace OnnxViTQ.Data;

/// <summary>
/// timm/torchvision-style evaluation preprocessing of 8-bit images: resize the shorter side to
/// <c>size / CropFraction</c> (bilinear), center-crop <see cref="Height"/>×<see cref="Width"/>,
/// convert channels, scale to [0, 1], then <c>(x − mean) / std</c> per channel; output CHW float32.
/// </summary>
internal sealed record ImagePreprocessing(int Height, int Width, int Channels, float[] Mean, float[] Std, float CropFraction)
{
    public static readonly float[] ImageNetMean = [0.485f, 0.456f, 0.406f];
    public static readonly float[] ImageNetStd = [0.229f, 0.224f, 0.225f];

    /// <summary>timm's default crop_pct.</summary>
    public const float DefaultCropFraction = 0.875f;

    /// <summary>
    /// Preprocessing for a model's image input [C,H,W]: from the model's metadata
    /// (<c>onnxvitq.preprocess.mean/std/crop_pct</c>, as written by tools/zoo) when present,
    /// otherwise ImageNet mean/std with crop fraction 0.875. A model that records its mean/std
    /// but no crop fraction was trained without a crop (fraction 1).
    /// </summary>
    public static ImagePreprocessing ForModel(Model model, int channels, int height, int width)
    {
        var mean = ParseList(model.GetMetadata("onnxvitq.preprocess.mean"), channels, "onnxvitq.preprocess.mean");
        var std = ParseList(model.GetMetadata("onnxvitq.preprocess.std"), channels, "onnxvitq.preprocess.std");
        // Metadata is part of an untrusted file: a crop past 1 would crop outside the resized image.
        float crop = model.GetMetadata("onnxvitq.preprocess.crop_pct") is { } c
            ? float.TryParse(c, NumberStyles.Float, CultureInfo.InvariantCulture, out float parsed) && parsed is > 0 and <= 1 ? parsed
                : throw new OnnxViTQException($"the model's metadata onnxvitq.preprocess.crop_pct = '{c}' must be a number in (0, 1] (override it with --crop-pct)")
            : mean is not null ? 1f : DefaultCropFraction;
        if (std is not null && std.Any(s => !(s > 0) || !float.IsFinite(s)))
            throw new OnnxViTQException($"the model's metadata onnxvitq.preprocess.std = '{model.GetMetadata("onnxvitq.preprocess.std")}' must be positive numbers (override it with --std)");
        return new ImagePreprocessing(height, width, channels,
            mean ?? Fit(ImageNetMean, channels), std ?? Fit(ImageNetStd, channels), crop);
    }

    private static float[]? ParseList(string? text, int channels, string key)
    {
        if (text is null) return null;
        var values = text.Split(',').Select(s => float.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out float v) && float.IsFinite(v) ? v
            : throw new OnnxViTQException($"the model's metadata {key} = '{text}' is not a comma-separated list of numbers")).ToArray();
        return values.Length == channels ? values : values.Length == 1 ? Enumerable.Repeat(values[0], channels).ToArray() : null;
    }

    private static float[] Fit(float[] rgb, int channels) => channels == 3 ? rgb : Enumerable.Repeat(rgb.Average(), channels).ToArray();

    public int SampleLength => Channels * Height * Width;

    /// <summary>Preprocesses one interleaved (HWC) 8-bit image with <paramref name="srcChannels"/>
    /// channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) into <paramref name="destination"/> (CHW).</summary>
    public void Apply(ReadOnlySpan<byte> pixels, int srcHeight, int srcWidth, int srcChannels, Span<float> destination)
    {
        if (destination.Length != SampleLength) throw new ArgumentException("destination has the wrong length");
        // Resize so the shorter side is size/crop, then take the centered crop: both done by
        // mapping each output pixel straight to source coordinates (one bilinear sample). A
        // non-square input is resized to (⌊H/crop⌋, ⌊W/crop⌋) exactly, as timm does for one: the
        // shorter-side rule could leave the resized image narrower than the crop.
        var (resizedH, resizedW) = ResizedSize(srcHeight, srcWidth);
        float top = MathF.Round((resizedH - Height) / 2f), left = MathF.Round((resizedW - Width) / 2f);
        float sy = srcHeight / resizedH, sx = srcWidth / resizedW;
        bool identity = resizedH == srcHeight && resizedW == srcWidth;

        int plane = Height * Width;
        Span<float> pixel = stackalloc float[4];
        for (int y = 0; y < Height; y++)
        {
            for (int x = 0; x < Width; x++)
            {
                if (identity) ReadPixel(pixels, srcWidth, srcChannels, (int)(y + top), (int)(x + left), pixel);
                else SampleBilinear(pixels, srcHeight, srcWidth, srcChannels, (y + top + 0.5f) * sy - 0.5f, (x + left + 0.5f) * sx - 0.5f, pixel);
                for (int c = 0; c < Channels; c++)
                {
                    float v = ChannelValue(pixel, srcChannels, c) / 255f;
                    destination[c * plane + y * Width + x] = (v - Mean[c]) / Std[c];
                }
            }
        }
    }

    /// <summary>The size an image of <paramref name="srcHeight"/>×<paramref name="srcWidth"/> is resized
    /// to before the crop (float32 arithmetic, which EmbeddedPreprocessing repeats op for op).</summary>
    public (float Height, float Width) ResizedSize(int srcHeight, int srcWidth)
    {
        if (Height != Width) return (MathF.Floor(Height / CropFraction), MathF.Floor(Width / CropFraction));
        float scaledShort = MathF.Floor(Math.Min(Height, Width) / CropFraction);
        float scale = scaledShort / Math.Min(srcHeight, srcWidth);
        float resizedH = MathF.Round(srcHeight * scale), resizedW = MathF.Round(srcWidth * scale);
        if (Math.Min(srcHeight, srcWidth) == srcHeight) resizedH = scaledShort; else resizedW = scaledShort;
        return (resizedH, resizedW);
    }

    /// <summary>Value of output channel <paramref name="c"/>: grey replicated to RGB, RGB reduced
    /// to grey by ITU-R 601 luma (as PIL's convert("L")), alpha dropped.</summary>
    private float ChannelValue(ReadOnlySpan<float> pixel, int srcChannels, int c)
    {
        bool srcGrey = srcChannels <= 2;
        if (Channels == 1) return srcGrey ? pixel[0] : 0.299f * pixel[0] + 0.587f * pixel[1] + 0.114f * pixel[2];
        return srcGrey ? pixel[0] : pixel[Math.Min(c, 2)];
    }

    private static void ReadPixel(ReadOnlySpan<byte> src, int w, int ch, int y, int x, Span<float> pixel)
    {
        int o = (y * w + x) * ch;
        for (int c = 0; c < ch; c++) pixel[c] = src[o + c];
    }

    private static void SampleBilinear(ReadOnlySpan<byte> src, int h, int w, int ch, float fy, float fx, Span<float> pixel)
    {
        fy = Math.Clamp(fy, 0, h - 1);
        fx = Math.Clamp(fx, 0, w - 1);
        int y0 = (int)fy, x0 = (int)fx;
        int y1 = Math.Min(y0 + 1, h - 1), x1 = Math.Min(x0 + 1, w - 1);
        float dy = fy - y0, dx = fx - x0;
        for (int c = 0; c < ch; c++)
        {
            float a = src[(y0 * w + x0) * ch + c], b = src[(y0 * w + x1) * ch + c];
            float d = src[(y1 * w + x0) * ch + c], e = src[(y1 * w + x1) * ch + c];
            pixel[c] = (a * (1 - dx) + b * dx) * (1 - dy) + (d * (1 - dx) + e * dx) * dy;
        }
    }

    public override string ToString() =>
        $"{Channels}x{Height}x{Width}, crop {CropFraction:0.###}, mean [{string.Join(", ", Mean.Select(m => m.ToString("0.####", CultureInfo.InvariantCulture)))}], std [{string.Join(", ", Std.Select(m => m.ToString("0.####", CultureInfo.InvariantCulture)))}]";
}
