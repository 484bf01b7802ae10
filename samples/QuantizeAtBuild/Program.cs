using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

// The quantized models were written by the build (OnnxQuantize items) and copied beside the program.
string models = Path.Combine(AppContext.BaseDirectory, "models");

// Tensor input: the application preprocesses the image itself.
string path = Path.Combine(models, "vit.w8a8.onnx");
using (var session = new InferenceSession(path))
{
    var input = session.InputMetadata.First();
    int[] shape = input.Value.Dimensions.Select(d => d > 0 ? d : 1).ToArray();
    var pixels = new DenseTensor<float>(shape);
    using var results = session.Run([NamedOnnxValue.CreateFromTensor(input.Key, pixels)]);
    var logits = results.First().AsEnumerable<float>().ToArray();
    Console.WriteLine($"{Path.GetFileName(path)}: {new FileInfo(path).Length} bytes, {logits.Length} logits, class {Array.IndexOf(logits, logits.Max())} for a blank image");
}

// Image-bytes input (EmbedPreprocessing): the file's bytes go in as they are; the model decodes,
// resizes, crops and normalizes. Its DecodeImage comes from ONNX Runtime Extensions.
string bytesPath = Path.Combine(models, "vit.w8a8.image-bytes.onnx");
using var options = new SessionOptions();
options.RegisterOrtExtensions();
using var imageSession = new InferenceSession(bytesPath, options);
byte[] image = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "images", "sample.png"));
using var encoded = OrtValue.CreateTensorValueFromMemory(image, [image.Length]);
using var runOptions = new RunOptions();
using var outputs = imageSession.Run(runOptions, [imageSession.InputNames[0]], [encoded], [imageSession.OutputNames[0]]);
var scores = outputs[0].GetTensorDataAsSpan<float>().ToArray();
Console.WriteLine($"{Path.GetFileName(bytesPath)}: class {Array.IndexOf(scores, scores.Max())} for images/sample.png ({image.Length} bytes of PNG)");
