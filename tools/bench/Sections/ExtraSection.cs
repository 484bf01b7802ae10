using OnnxViTQ.Evaluation;
using OnnxViTQ.Ir;
using OnnxViTQ.PassInfra;
using OnnxViTQ.Passes.Reparameterize;
using OnnxViTQ.Serialization;

/// <summary>
/// "Accuracy: separately trained exports (not committed) and their outlier variants": the accuracy
/// table on the exports of --extra, each with an outlier variant made in memory by the same tool
/// as the committed ones.
/// Regenerate: <c>dotnet run --project tools/bench -c Release -- --only extra --extra &lt;folder&gt; --out &lt;file&gt;</c>.
/// </summary>
internal static class ExtraSection
{
    public static void Write(Bench b, string extra)
    {
        var report = b.Report;
        var files = Directory.GetFiles(extra, "*.opset17.onnx").Where(f => !f.Contains(".nofold.") && !f.Contains(".static.")).Order().ToList();
        var set = new List<(string, Func<Model>, (int[], double))>();
        foreach (var file in files)
        {
            string name = Path.GetFileName(file);
            set.Add((name, () => OnnxModelReader.Load(file), b.Fp32(file)));
            Model Outliers()
            {
                var m = OnnxModelReader.Load(file);
                new PassManager([new InjectOutlierChannels(0.02, 8, 50, 1, file)]).Run(m, new PassContext());
                return m;
            }
            string outlierName = name.Replace(".opset17", "-outliers.opset17");
            var om = Outliers();
            var fp = ClassificationEvaluator.Predict(om, outlierName, b.EvalSource(om));
            set.Add((outlierName, Outliers, (fp, ClassificationEvaluator.Score(fp, b.Labels).Top1)));
        }
        report.AppendLine("Models below are not in the repository: other members of the same families trained separately");
        report.AppendLine("(`/usr/bin/python3 tools/zoo/zoo.py train <family> --variant alt --seed 7 --minutes 10 --threads 1 --out <folder>`: other sizes,");
        report.AppendLine("patch sizes, depths and seed), to check that the recipes are not tuned to the committed files; each with its own outlier");
        report.AppendLine("variant made in memory by the same tool (`InjectOutlierChannels`, fraction 0.02, factors 8–50, seed 1).");
        report.AppendLine();
        AccuracySection.Table(b, "Accuracy: separately trained exports (not committed) and their outlier variants", "extra", set, b.Bits);
    }
}
