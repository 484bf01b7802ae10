using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

// The quantized model was written by the build (OnnxQuantize item) and copied beside the program.
string path = Path.Combine(AppContext.BaseDirectory, "models", "vit.w8a8.onnx");
using var session = new InferenceSession(path);
var input = session.InputMetadata.First();
int[] shape = input.Value.Dimensions.Select(d => d > 0 ? d : 1).ToArray();
var pixels = new DenseTensor<float>(shape);
using var results = session.Run([NamedOnnxValue.CreateFromTensor(input.Key, pixels)]);
var logits = results.First().AsEnumerable<float>().ToArray();
Console.WriteLine($"{Path.GetFileName(path)}: {new FileInfo(path).Length} bytes, {logits.Length} logits, class {Array.IndexOf(logits, logits.Max())} for a blank image");
